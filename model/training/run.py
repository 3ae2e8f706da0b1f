"""One training run end to end: data -> initial model -> training -> held-out evaluation -> a version folder.

``RunSpec`` says what to do (data sets, where to start, model shape for scratch runs, training and
evaluation settings) and is plain JSON, so the same spec comes from the CLI, from a training-run row's
``params``, or from a named recipe (``RECIPES``). ``train_version`` does the work and knows nothing about
the database: the worker (``workers.training_job``) adds corrections, progress reporting and registration.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.artifacts import goemotions_labels, load_artifact, save_artifact
from model.config import ModelConfig
from model.factory import build_model, load_pretrained
from model.multitask import MultiTaskModel
from model.tokenizer import Tokenizer
from model.training.adapters import merge_lora, with_lora
from model.training.baselines import lead3_baseline, tfidf_emotion_baseline, tfidf_topic_baseline
from model.training.batching import encoder_inputs, token_ids
from model.training.config import TrainConfig
from model.training.data import (
    DEFAULT_FRACTIONS,
    Example,
    data_hash,
    deduplicate,
    describe,
    load_datasets,
    split_examples,
)
from model.training.evaluation import EvalSettings, evaluate, held_out_score
from model.training.metrics import multi_hot
from model.training.plots import plot_confusion, plot_loss_curves
from model.training.scratch_init import (
    label_evidence,
    linear_probe_heads,
    lsa_embeddings,
    prior_biases,
    shrink_residual_outputs,
)
from model.training.trainer import ProgressCallback, Trainer, TrainResult

log = logging.getLogger(__name__)


class RunSpecError(ValueError):
    """A training request that cannot be run as given; the message names the setting."""


@dataclass
class RunSpec:
    datasets: list[str] = field(default_factory=lambda: ["bbc", "goemotions"])
    # "scratch", "active" (the caller substitutes the active version's folder), a version folder,
    # or a T5 / FLAN-T5 checkpoint folder
    init: str = "scratch"
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields for scratch runs
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalSettings = field(default_factory=EvalSettings)
    split_fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    max_train_examples: int | None = None  # per source, after splitting (quick runs, tests)
    max_eval_examples: int | None = None  # per source, for dev and test
    # scratch runs: token embeddings from LSA over the training texts, head biases at the label priors and
    # residual outputs scaled by residual_init_scale (model.training.scratch_init)
    lsa_init: bool = True
    label_evidence_init: bool = False  # with lsa_init: first dimensions = per-label naive-Bayes evidence
    linear_probe_init: bool = False  # fit the heads by logistic regression on the initial pooled states
    residual_init_scale: float = 1.0
    baselines: bool = True  # TF-IDF + LR and lead-3 on the same splits
    # the whole run (loading, training, evaluation, baselines) should end within this many seconds: training
    # gets what is left after loading, less a reserve for what follows (see training_budget)
    time_limit_s: float | None = None
    # passes over the batches of every task the run trains on (model.training.trainer.steps_for_epochs); when
    # set it decides train.max_steps once the rows are encoded and batched
    epochs: float | None = None

    def __post_init__(self) -> None:
        if self.epochs is not None and not self.epochs > 0:
            raise RunSpecError(f"epochs must be positive, got {self.epochs}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["train"] = self.train.to_dict()
        data["split_fractions"] = list(self.split_fractions)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RunSpecError(f"unknown run settings: {unknown}; known: {sorted(known)}")
        if "train" in data and isinstance(data["train"], dict):
            data["train"] = TrainConfig.from_dict(data["train"])
        if "eval" in data and isinstance(data["eval"], dict):
            data["eval"] = EvalSettings(**data["eval"])
        if "split_fractions" in data:
            data["split_fractions"] = tuple(data["split_fractions"])
        return cls(**data)


# The starter recipe: a small model from scratch on the local corpora, sized for a 2-core CPU in minutes.
STARTER_MODEL = dict(
    d_model=128, d_kv=32, num_heads=4, d_ff=256, num_layers=2, num_decoder_layers=2,
    dropout_rate=0.0,  # dropout's random masks cost a fifth of a CPU step; early stopping regularises instead
    max_input_length=128,  # title and lead per chunk; the pipeline reads longer documents in chunks
)
STARTER_TRAIN = dict(
    learning_rate=2e-3, head_lr_scale=10.0, warmup_steps=100, max_steps=3000, min_lr_ratio=0.05,
    batch_size=32, max_tokens_per_batch=2048, max_input_length=128, max_summary_length=48,
    task_temperature=2.0, eval_every=500, early_stopping_patience=2, log_every=20, weight_decay=0.01,
    # the data-derived embeddings stay fixed: AdamW over a 4M-row table would be most of a CPU step
    freeze=("token_embedding",),
)
STARTER_EVAL = dict(max_input_length=128, max_new_tokens=64, max_summary_examples=200)
STARTER = dict(datasets=["bbc", "goemotions"], init="scratch", model=STARTER_MODEL, train=STARTER_TRAIN,
               eval=STARTER_EVAL, label_evidence_init=True, linear_probe_init=True, residual_init_scale=0.1,
               time_limit_s=840.0)  # the limit is 15 minutes on 2 CPU cores; aim for 14
RECIPES: dict[str, dict[str, Any]] = {
    "starter": STARTER,
    # fine-tune the active version (or the base checkpoint) on the corpora and the corrections
    "finetune": dict(datasets=["bbc", "goemotions"], init="active",
                     train=dict(learning_rate=1e-4, warmup_steps=50, max_steps=600, eval_every=200)),
}


# keys a run's params may carry that are not training settings: the reason it was queued (free text), the
# worker's own switches, and a starter run's restart policy (db.versions.starter_params)
NOT_TRAINING_SETTINGS = frozenset({"reason", "include_feedback", "try", "max_tries", "retry_after_s"})


def spec_from_params(params: dict[str, Any]) -> RunSpec:
    """A RunSpec from a recipe name plus overrides: {"recipe": "starter", "train": {"max_steps": 100}, ...}."""
    params = {k: v for k, v in params.items() if k not in NOT_TRAINING_SETTINGS}
    name = params.pop("recipe", "finetune")
    if name not in RECIPES:
        raise RunSpecError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    base = RECIPES[name]
    merged: dict[str, Any] = {**base, **params}
    for nested in ("train", "model", "eval"):
        if nested in base or nested in params:
            merged[nested] = {**base.get(nested, {}), **params.get(nested, {})}
    return RunSpec.from_dict(merged)


@dataclass
class RunOutcome:
    folder: Path
    metrics: dict[str, Any]
    result: TrainResult
    held_out: float | None
    splits: dict[str, list[Example]]
    model: MultiTaskModel  # the saved weights, in eval mode
    tokenizer: Tokenizer


# ------------------------------------------------------------------------------------------------ data
def load_splits(spec: RunSpec, shared_root: Path, extra: Sequence[Example] = ()) -> dict[str, list[Example]]:
    examples = deduplicate([*load_datasets(spec.datasets, shared_root), *extra])
    splits = split_examples(examples, spec.split_fractions)
    caps = {"train": spec.max_train_examples, "dev": spec.max_eval_examples, "test": spec.max_eval_examples}
    for name, cap in caps.items():
        if cap is not None:
            splits[name] = _cap_per_source(splits[name], cap)
    for name, rows in splits.items():
        log.info("%s split: %s", name, describe(rows))
    return splits


DATASET_NAMES = {"ag_news": "AG News", "bbc": "BBC News"}


def fit_to_topic_head(spec: RunSpec, splits: dict[str, list[Example]], head: Sequence[str]
                      ) -> tuple[dict[str, list[Example]], dict[str, int]]:
    """Every split with the topic of rows the topic head cannot output removed (their other labels stay), so
    training, dev, test and the comparison with the active version all use the same topic rows.

    Returns the splits and {ignored label: rows}. A data set none of whose topics the head has is refused
    when the run trains topics (it could only add rows that are thrown away, or wreck the scores)."""
    if "topic" not in spec.train.tasks or not head:
        return splits, {}
    known = set(head)
    every = [e for rows in splits.values() for e in rows]
    for name in spec.datasets:
        topics = {e.topic for e in every if e.topic is not None and name in e.source.split("+")}
        if topics and not topics & known:
            shown = DATASET_NAMES.get(name, name)
            raise RunSpecError(f"{shown} topics ({', '.join(sorted(topics))}) do not match this model's topic "
                               f"head ({', '.join(head)}); leave {shown} out or do not train the topic task")
    ignored = Counter(e.topic for e in every if e.topic is not None and e.topic not in known)
    if ignored:
        log.warning("topic: ignoring rows with labels the model has no head output for: %s", dict(ignored))
    fitted = {name: [e if e.topic is None or e.topic in known else dataclasses.replace(e, topic=None)
                     for e in rows] for name, rows in splits.items()}
    return fitted, dict(sorted(ignored.items()))


def _cap_per_source(rows: list[Example], cap: int) -> list[Example]:
    seen: dict[str, int] = {}
    kept = []
    for row in rows:
        if seen.get(row.source, 0) < cap:
            kept.append(row)
            seen[row.source] = seen.get(row.source, 0) + 1
    return kept


# ----------------------------------------------------------------------------------------------- model
def initial_model(
    spec: RunSpec, train: Sequence[Example], shared_root: Path
) -> tuple[MultiTaskModel, Tokenizer, dict[str, Any]]:
    """(model, tokenizer, labels of the starting point) for spec.init."""
    if spec.init == "active":
        raise RunSpecError("init='active' must be replaced by the active version's folder by the caller")
    if spec.init != "scratch":
        folder = Path(spec.init)
        if (folder / "manifest.json").is_file():
            artifact = load_artifact(folder)
            return artifact.model, artifact.tokenizer, artifact.labels
        topic, emotion = _labels_from_data(train, spec.datasets)
        model = load_pretrained(folder, topic_labels=topic, emotion_labels=emotion)
        return model, Tokenizer.from_folder(folder if (folder / "spiece.model").exists() else
                                            shared_root / "tokenizer"), {}
    tokenizer = Tokenizer.from_folder(shared_root / "tokenizer")
    topic, emotion = _labels_from_data(train, spec.datasets)
    config = ModelConfig(topic_labels=topic, emotion_labels=emotion, **spec.model)
    torch.manual_seed(spec.train.seed)
    model = build_model(config)
    prior_biases(model, [e.topic for e in train if e.topic is not None],
                 [e.emotions for e in train if e.emotions is not None])
    if spec.residual_init_scale != 1.0:
        shrink_residual_outputs(model, spec.residual_init_scale)
    if spec.lsa_init:
        with torch.no_grad():
            model.token_embedding.weight.copy_(_scratch_embeddings(spec, config, train, tokenizer))
    if spec.linear_probe_init:
        _probe_heads(spec, model, train, tokenizer)
    return model, tokenizer, {}


def _scratch_embeddings(spec: RunSpec, config: ModelConfig, train: Sequence[Example], tokenizer: Tokenizer
                        ) -> torch.Tensor:
    texts = [e.text for e in train] + [e.summary for e in train if e.summary]
    documents = token_ids(tokenizer, texts, spec.train.max_input_length)
    evidence = None
    if spec.label_evidence_init:
        parts = []
        for labels, rows in (
            (config.topic_labels, [(i, [e.topic]) for i, e in enumerate(train) if e.topic is not None]),
            (config.emotion_labels, [(i, list(e.emotions)) for i, e in enumerate(train) if e.emotions]),
        ):
            index = {label: n for n, label in enumerate(labels)}
            if labels and rows:
                parts.append(label_evidence([documents[i] for i, _ in rows],
                                            [[index[x] for x in chosen if x in index] for _, chosen in rows],
                                            len(labels), config.vocab_size))
        evidence = np.concatenate(parts, axis=1) if parts else None
    return lsa_embeddings(documents, config.vocab_size, config.d_model, seed=spec.train.seed, evidence=evidence)


PROBE_ROWS = 10000  # rows per head for the linear probes: plenty for 128 features, seconds to fit


def _probe_heads(spec: RunSpec, model: MultiTaskModel, train: Sequence[Example], tokenizer: Tokenizer) -> None:
    def inputs(rows: list[Example]) -> list[list[int]]:
        return [c[0] for c in encoder_inputs(tokenizer, [e.text for e in rows], spec.train.max_input_length,
                                             spec.train.input_prefix, max_chunks=1)]

    config = model.config
    topic_index = {label: i for i, label in enumerate(config.topic_labels)}
    topics = [e for e in train if e.topic in topic_index]
    emotions = [e for e in train if e.emotions is not None]
    if len(emotions) > PROBE_ROWS:  # tokenise only the rows the probe will read
        emotions = random.Random(spec.train.seed).sample(emotions, PROBE_ROWS)
    known = set(config.emotion_labels)
    gold = multi_hot([[x for x in e.emotions if x in known] for e in emotions], config.emotion_labels)
    linear_probe_heads(model, (inputs(topics), [topic_index[e.topic] for e in topics]) if topics else None,
                       (inputs(emotions), gold) if emotions else None, max_rows=PROBE_ROWS, seed=spec.train.seed)
    model.train()


def _labels_from_data(train: Sequence[Example], datasets: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    topics = tuple(sorted({e.topic for e in train if e.topic is not None}))
    emotions_seen = {label for e in train if e.emotions for label in e.emotions}
    if "goemotions" in datasets:
        canonical = goemotions_labels()
        emotions = canonical + tuple(sorted(emotions_seen - set(canonical)))
    else:
        emotions = tuple(sorted(emotions_seen))
    return topics, emotions


# --------------------------------------------------------------------------------------------- the run
def train_version(
    spec: RunSpec,
    output_folder: str | Path,
    *,
    shared_root: str | Path,
    extra_examples: Sequence[Example] = (),
    callback: ProgressCallback | None = None,
    checkpoint_dir: str | Path | None = None,
    device: str = "auto",
    parent: str | None = None,
    extra_manifest: dict[str, Any] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Train, evaluate on the held-out split and save a version folder; returns where and how well.

    With ``checkpoint_dir`` the run checkpoints as it goes and resumes from a checkpoint found there.
    ``on_phase`` hears "loading", "evaluating", "baselines" and "saving" as the run moves past training.
    """
    phase = on_phase or (lambda name: None)
    phase("loading")
    shared_root = Path(shared_root)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    started = time.perf_counter()
    splits = load_splits(spec, shared_root, extra_examples)
    model, tokenizer, base_labels = initial_model(spec, splits["train"], shared_root)
    splits, ignored_topics = fit_to_topic_head(spec, splits, model.config.topic_labels)
    if spec.train.mode == "lora":
        model = with_lora(model, spec.train.lora_rank, spec.train.lora_alpha)
    trainer = Trainer(model, tokenizer, spec.train, splits["train"], splits["dev"], device=device,
                      callback=callback, checkpoint_dir=checkpoint_dir, epochs=spec.epochs)
    if checkpoint_dir and (Path(checkpoint_dir) / "trainer.json").is_file():
        trainer.resume(checkpoint_dir)
    if spec.time_limit_s is not None:
        budget = training_budget(spec.time_limit_s, time.perf_counter() - started, spec.baselines)
        trainer.config.time_budget_s = min(budget, trainer.config.time_budget_s or budget)
        log.info("time limit %.0f s: training may use %.0f s", spec.time_limit_s, trainer.config.time_budget_s)
    result = trainer.train()
    model = merge_lora(trainer.model).eval()

    phase("evaluating")
    eval_started = time.perf_counter()
    test_metrics = evaluate(model, tokenizer, splits["dev"], splits["test"], spec.eval, tasks=spec.train.tasks)
    thresholds = test_metrics.pop("emotion_thresholds", base_labels.get("emotion_thresholds", {}))
    temperature = test_metrics.pop("topic_temperature", base_labels.get("topic_temperature", 1.0))
    metrics: dict[str, Any] = {
        "test": test_metrics,
        "held_out_score": held_out_score(test_metrics),
        "training": {
            "steps": result.steps, "epochs": round(trainer.epochs_done, 3), "best_step": result.best_step,
            "best_dev_loss": result.best_dev_loss,
            "stopped_early": result.stopped_early, "stopped_by_time": result.stopped_by_time,
            "train_seconds": round(result.train_seconds, 1),
            "eval_seconds": round(time.perf_counter() - eval_started, 1),
            "device": device, "threads": torch.get_num_threads(), "time_budget_s": trainer.config.time_budget_s,
            "ignored_topic_labels": ignored_topics,  # {label: rows} the topic head cannot output
        },
        "data": {name: describe(rows) for name, rows in splits.items()},
        "split": {"method": "sha256 of normalised text", "fractions": list(spec.split_fractions)},
    }
    if spec.baselines:
        phase("baselines")
        baseline_started = time.perf_counter()
        metrics["baselines"] = baselines(splits, model.config, spec.eval.max_summary_examples, spec.train.tasks)
        metrics["baselines"]["seconds"] = round(time.perf_counter() - baseline_started, 1)
    metrics["total_seconds"] = round(time.perf_counter() - started, 1)
    labels = {"topic": list(model.config.topic_labels), "emotion": list(model.config.emotion_labels),
              "emotion_thresholds": thresholds, "topic_temperature": temperature, "heads_trained": True}
    phase("saving")
    with tempfile.TemporaryDirectory() as scratch:
        plots = _plots(result, test_metrics, Path(scratch))
        folder = save_artifact(
            output_folder, model, tokenizer, labels, metrics, parent=parent, extra_files=plots,
            extra_manifest={
                "source": "trained",
                "run_spec": spec.to_dict(),
                "training_config": spec.train.to_dict(),
                "data_hashes": {name: data_hash(rows) for name, rows in splits.items()},
                **(extra_manifest or {}),
            },
        )
    log.info("saved %s: held-out score %s", folder, metrics["held_out_score"])
    return RunOutcome(folder, metrics, result, metrics["held_out_score"], splits, model, tokenizer)


# evaluation and baselines read the same data as loading did, on the same (possibly busy) cores: measured
# on 2 cores they took 1.6x (idle) to 2.6x (load average 7) as long as loading and tokenising
AFTER_TRAINING_FACTOR = 3.0


def training_budget(time_limit_s: float, spent_s: float, baselines: bool) -> float:
    """Seconds of training that keep the whole run within time_limit_s, given spent_s of loading so far."""
    reserve = spent_s * (AFTER_TRAINING_FACTOR if baselines else AFTER_TRAINING_FACTOR / 2)
    return max(30.0, time_limit_s - spent_s - reserve)


def baselines(splits: dict[str, list[Example]], config: ModelConfig, max_summaries: int,
              tasks: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    train, dev, test = splits["train"], splits["dev"], splits["test"]
    if "topic" in tasks and config.topic_labels and any(e.topic for e in test):
        out["tfidf_lr_topic"] = tfidf_topic_baseline(train, test, sorted(set(config.topic_labels)
                                                                         | {e.topic for e in test if e.topic}))
    if "emotion" in tasks and config.emotion_labels and any(e.emotions is not None for e in test):
        out["tfidf_lr_emotion"] = tfidf_emotion_baseline(train, dev, test, config.emotion_labels)
    summary_rows = [e for e in test if e.summary is not None][:max_summaries]
    if "summary" in tasks and summary_rows:
        out["lead3_summary"] = {**lead3_baseline(summary_rows), "n": len(summary_rows)}
    return out


def _plots(result: TrainResult, metrics: dict[str, Any], folder: Path) -> dict[str, Path]:
    plots = {"loss_curve.png": plot_loss_curves(_plot_rows(result.history), folder / "loss_curve.png")}
    topic = metrics.get("topic")
    if topic:
        plots["topic_confusion.png"] = plot_confusion(topic["confusion"], topic["labels"],
                                                      folder / "topic_confusion.png", "topic (test split)")
    return plots


def _plot_rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for entry in history:
        for task, loss in entry.get("losses", {}).items():
            rows.append({"step": entry["step"], "loss": loss, "task": task})
        if "dev_loss" in entry:
            rows.append({"step": entry["step"], "dev_loss": entry["dev_loss"]})
    return rows
