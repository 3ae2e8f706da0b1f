"""The trainer: a tiny multitask run end to end, exact resume, LoRA, optimizer groups, honest thresholds."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from model.artifacts import load_artifact, shared_data_dir
from model.training.batching import bucketed_batches
from model.training.config import TrainConfig
from model.training.data import Example
from model.training.evaluation import EvalSettings, class_scores, evaluate
from model.training.metrics import multi_hot, tune_thresholds
from model.training.optim import build_optimizer, lr_factor
from model.training.run import initial_model, load_splits, spec_from_params, train_version
from model.training.trainer import Trainer, TrainingCancelled


def _outputs(model, tokenizer, texts):
    batch = tokenizer.batch_encode(texts, max_length=48)
    with torch.no_grad():
        states = model.encode(batch.input_ids, batch.attention_mask)
        classes = model.classify(states, batch.attention_mask)
        generated = model.generate(batch.input_ids, batch.attention_mask, max_new_tokens=6)
    return classes.topic_logits, classes.emotion_logits, generated


def test_tiny_multitask_run_saves_a_version_that_reloads_to_the_same_outputs(tiny_run):
    outcome, reports = tiny_run
    assert outcome.result.steps == 6 and [r.step for r in reports if r.phase == "train"][:2] == [1, 2]
    assert {t for r in reports for t in r.task_losses} == {"summary", "topic", "emotion"}
    assert outcome.result.best_step is not None  # dev loss measured and best weights kept
    assert set(outcome.metrics["test"]) == {"summary", "topic", "emotion"}

    artifact = load_artifact(outcome.folder)  # from the folder alone
    assert artifact.labels["heads_trained"] is True
    assert artifact.manifest["training_config"]["max_steps"] == 6
    assert set(artifact.manifest["data_hashes"]) == {"train", "dev", "test"}
    assert {"loss_curve.png", "topic_confusion.png"} <= set(artifact.manifest["files"])
    texts = ["Shares in the bank rose after the results.", "I love this so much, thank you!"]
    for before, after in zip(_outputs(outcome.model, outcome.tokenizer, texts),
                             _outputs(artifact.model, artifact.tokenizer, texts), strict=True):
        assert torch.equal(before, after)


def _trainer(spec, splits, tokenizer_and_model, checkpoint_dir=None, callback=None):
    model, tokenizer = tokenizer_and_model
    return Trainer(model, tokenizer, spec.train, splits["train"], splits["dev"], device="cpu",
                   checkpoint_dir=checkpoint_dir, callback=callback)


def test_resume_after_interruption_reproduces_the_uninterrupted_loss_curve(tiny_params, tmp_path):
    tiny_params["train"].update(max_steps=8, eval_every=3, checkpoint_every=4, early_stopping_patience=0)
    spec = spec_from_params(tiny_params)
    splits = load_splits(spec, shared_data_dir())

    def fresh():
        model, tokenizer, _ = initial_model(spec, splits["train"], shared_data_dir())
        return model, tokenizer

    uninterrupted = _trainer(spec, splits, fresh()).train()

    def crash(progress):
        if progress.step == 5:
            raise TrainingCancelled("simulated interruption after step 5")

    checkpoints = tmp_path / "ckpt"
    with pytest.raises(TrainingCancelled):
        _trainer(spec, splits, fresh(), checkpoint_dir=checkpoints, callback=crash).train()
    resumed = _trainer(spec, splits, fresh(), checkpoint_dir=checkpoints)
    resumed.resume(checkpoints)
    assert resumed.step == 4
    result = resumed.train()
    assert [h["loss"] for h in result.history] == [h["loss"] for h in uninterrupted.history]
    assert [h.get("dev_loss") for h in result.history] == [h.get("dev_loss") for h in uninterrupted.history]
    assert result.best_step == uninterrupted.best_step
    assert not list(checkpoints.glob("*.pt")) and not list(checkpoints.glob("*.bin"))  # no pickle


def test_resume_refuses_a_checkpoint_from_other_settings(tiny_params, tmp_path):
    spec = spec_from_params(tiny_params)
    splits = load_splits(spec, shared_data_dir())
    model, tokenizer, _ = initial_model(spec, splits["train"], shared_data_dir())
    trainer = _trainer(spec, splits, (model, tokenizer))
    trainer.save_checkpoint(tmp_path / "ckpt")
    tiny_params["train"]["learning_rate"] = 1e-2
    other = spec_from_params(tiny_params)
    with pytest.raises(Exception, match="learning_rate"):
        _trainer(other, splits, (model, tokenizer)).resume(tmp_path / "ckpt")


def test_lora_trains_only_adapters_and_heads_and_saves_merged(tiny_params, tiny_run, tmp_path):
    version = tiny_run[0].folder
    tiny_params["train"].update(mode="lora", lora_rank=4, max_steps=3)
    tiny_params["init"] = str(version)
    outcome = train_version(spec_from_params(tiny_params), tmp_path / "lora", shared_root=shared_data_dir(),
                            device="cpu", parent="v1")
    artifact = load_artifact(outcome.folder)
    assert artifact.model.config.lora_rank == 0  # adapters folded in
    assert artifact.manifest["parent"] == "v1" and artifact.manifest["training_config"]["mode"] == "lora"
    start = load_artifact(version).model.state_dict()
    after = artifact.model.state_dict()
    assert torch.equal(start["token_embedding.weight"], after["token_embedding.weight"])  # frozen
    assert torch.equal(start["encoder.blocks.0.ff.wi_0.weight"], after["encoder.blocks.0.ff.wi_0.weight"])
    assert not torch.equal(start["topic_head.proj.weight"], after["topic_head.proj.weight"])  # trained
    assert not torch.equal(start["encoder.blocks.0.attn.q.weight"], after["encoder.blocks.0.attn.q.weight"])


def test_optimizer_decays_matrices_only_and_honours_betas_and_eps(tiny_params):
    tiny_params["train"].update(betas=[0.8, 0.95], eps=1e-6, weight_decay=0.05, head_lr_scale=10.0,
                                learning_rate=1e-3)
    spec = spec_from_params(tiny_params)
    model, _, _ = initial_model(spec, [Example(text="x", topic="a")], shared_data_dir())
    optimizer = build_optimizer(model, spec.train, torch.device("cpu"))
    names = {id(p): n for n, p in model.named_parameters()}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(names)
    for group in optimizer.param_groups:
        assert group["betas"] == (0.8, 0.95) and group["eps"] == 1e-6
        for param in group["params"]:
            assert group["weight_decay"] == (0.05 if param.dim() >= 2 else 0.0)
            head = names[id(param)].startswith(("topic_head.", "emotion_head."))
            assert group["lr"] == pytest.approx(1e-2 if head else 1e-3)
    config = TrainConfig(warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_factor(0, config) == pytest.approx(0.1) and lr_factor(9, config) == pytest.approx(1.0)
    assert lr_factor(60, config) == pytest.approx(0.55) and lr_factor(110, config) == pytest.approx(0.1)


def test_length_bucketed_batches_respect_both_limits():
    lengths = [random.Random(i).randint(1, 100) for i in range(500)]
    batches = bucketed_batches(lengths, batch_size=16, max_tokens=400, rng=random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(500))
    for batch in batches:
        assert len(batch) <= 16 and (len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 400)
    assert batches == bucketed_batches(lengths, batch_size=16, max_tokens=400, rng=random.Random(0))


def test_task_sampling_follows_the_temperature(tiny_params):
    tiny_params["train"]["task_temperature"] = 1.0
    spec = spec_from_params(tiny_params)
    splits = load_splits(spec, shared_data_dir())
    model, tokenizer, _ = initial_model(spec, splits["train"], shared_data_dir())
    trainer = _trainer(spec, splits, (model, tokenizer))
    sizes = np.array([len(trainer.train_rows[t]) for t in trainer.tasks], dtype=float)
    assert trainer.task_probabilities == pytest.approx(list(sizes / sizes.sum()))


def test_emotion_thresholds_are_tuned_on_dev_and_only_applied_to_test(tiny_params, tmp_path):
    spec = spec_from_params(tiny_params)
    splits = load_splits(spec, shared_data_dir())
    model, tokenizer, _ = initial_model(spec, splits["train"], shared_data_dir())
    model.eval()
    labels = model.config.emotion_labels
    dev = [Example(text=f"comment number {i} is fine", emotions=(labels[i % 3],)) for i in range(30)]
    test = [Example(text=f"another comment {i}", emotions=(labels[(i + 1) % 5],)) for i in range(30)]
    settings = EvalSettings(max_input_length=48)
    metrics = evaluate(model, tokenizer, dev, test, settings, tasks=("emotion",))
    _, dev_scores = class_scores(model, tokenizer, [e.text for e in dev], settings)
    _, test_scores = class_scores(model, tokenizer, [e.text for e in test], settings)
    from_dev = tune_thresholds(multi_hot([e.emotions for e in dev], labels), dev_scores)
    from_test = tune_thresholds(multi_hot([e.emotions for e in test], labels), test_scores)
    assert list(metrics["emotion_thresholds"].values()) == from_dev
    assert from_dev != from_test  # the check would be vacuous otherwise


def test_tune_thresholds_picks_the_best_f1_per_label():
    gold = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    scores = np.array([[0.9, 0.1], [0.35, 0.2], [0.3, 0.25], [0.1, 0.5]])
    thresholds = tune_thresholds(gold, scores, grid=(0.2, 0.3, 0.32, 0.4, 0.6))
    assert thresholds[0] == 0.32  # keeps both positives (0.9, 0.35), drops the 0.3 negative
    assert thresholds[1] == 0.2 or thresholds[1] == 0.3
