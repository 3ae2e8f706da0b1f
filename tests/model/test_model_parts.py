"""Config, heads, pooling, LoRA and zero-shot scoring on tiny random models."""

from __future__ import annotations

import pytest
import torch

from model import ConfigError, ModelConfig, build_model, zero_shot_emotions, zero_shot_topics
from model.attention import relative_position_bucket
from model.lora import LoRALinear, mark_only_lora_trainable

TINY = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, vocab_size=32128)


def test_config_json_round_trip(tmp_path):
    config = ModelConfig(
        **TINY, topic_labels=("a", "b"), emotion_labels=("joy",), pooling="attention", lora_rank=4
    )
    config.to_json(tmp_path / "config.json")
    assert ModelConfig.from_json(tmp_path / "config.json") == config
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_config_from_flan_t5_json():
    flan = {  # google/flan-t5-base config.json
        "model_type": "t5",
        "d_model": 768,
        "d_kv": 64,
        "d_ff": 2048,
        "num_layers": 12,
        "num_decoder_layers": 12,
        "num_heads": 12,
        "feed_forward_proj": "gated-gelu",
        "tie_word_embeddings": False,
        "vocab_size": 32128,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "eos_token_id": 1,
        "pad_token_id": 0,
        "decoder_start_token_id": 0,
        "layer_norm_epsilon": 1e-6,
        "dropout_rate": 0.1,
    }
    config = ModelConfig.from_t5_config(flan)
    assert config.is_gated and not config.tie_word_embeddings and not config.scale_decoder_outputs
    original = ModelConfig.from_t5_config({"model_type": "t5", "feed_forward_proj": "relu"})
    assert original.tie_word_embeddings and original.scale_decoder_outputs


@pytest.mark.parametrize(
    "bad",
    [
        dict(feed_forward_proj="gated-silu"),
        dict(pooling="max"),
        dict(topic_labels=("a", "a")),
        dict(d_model=0),
    ],
)
def test_invalid_config_is_refused(bad):
    with pytest.raises(ConfigError):
        ModelConfig(**{**TINY, **bad})


def test_unknown_fields_are_refused():
    with pytest.raises(ConfigError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({**ModelConfig(**TINY).to_dict(), "rotary": True})


def test_relative_buckets_match_t5():
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(-300, 300)[None, :]
    for bidirectional in (True, False):
        ours = relative_position_bucket(rel, bidirectional, 32, 128)
        ref = T5Attention._relative_position_bucket(
            rel, bidirectional=bidirectional, num_buckets=32, max_distance=128
        )
        assert torch.equal(ours, ref)


def test_heads_exist_only_with_labels():
    bare = build_model(ModelConfig(**TINY))
    assert bare.topic_head is None and bare.emotion_head is None
    ids = torch.randint(2, 100, (2, 6))
    out = bare.classify(bare.encode(ids, torch.ones_like(ids)), torch.ones_like(ids))
    assert out.topic_logits is None and out.emotion_logits is None and out.topic_probabilities() is None


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_pooled_heads_ignore_padding(pooling):
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(**TINY, topic_labels=("a", "b", "c"), emotion_labels=("x", "y"), pooling=pooling)
    )
    model.eval()
    ids = torch.randint(2, 100, (1, 5))
    padded = torch.cat([ids, torch.randint(2, 100, (1, 4))], dim=1)
    mask = torch.tensor([[1] * 5 + [0] * 4])
    with torch.no_grad():
        alone = model.classify(model.encode(ids, torch.ones_like(ids)), torch.ones_like(ids))
        batched = model.classify(model.encode(padded, mask), mask)
    assert torch.allclose(alone.topic_logits, batched.topic_logits, atol=1e-5)
    assert torch.allclose(alone.emotion_logits, batched.emotion_logits, atol=1e-5)
    assert torch.allclose(batched.topic_probabilities().sum(-1), torch.ones(1))
    assert ((batched.emotion_probabilities() > 0) & (batched.emotion_probabilities() < 1)).all()


def test_forward_routes_one_encoder_pass_to_every_head():
    model = build_model(ModelConfig(**TINY, topic_labels=("a", "b"), emotion_labels=("x",)))
    ids = torch.randint(2, 100, (2, 7))
    out = model(ids, torch.ones_like(ids), decoder_input_ids=torch.zeros((2, 3), dtype=torch.long))
    assert out.encoder_states.shape == (2, 7, 32) and out.lm_logits.shape == (2, 3, 32128)
    assert out.classes.topic_logits.shape == (2, 2) and out.classes.emotion_logits.shape == (2, 1)


def test_dropout_drops_in_training_and_costs_no_op_in_eval():
    """Eval passes are launch-bound on a GPU: dropout must not reach the dispatcher there (38 calls per
    FLAN-T5-base encoder pass), and must still drop while training."""
    from torch.profiler import profile

    torch.manual_seed(0)
    model = build_model(ModelConfig(**{**TINY, "dropout_rate": 0.5}, topic_labels=("a", "b")))
    ids = torch.randint(2, 100, (2, 7))
    mask = torch.ones_like(ids)
    model.train()
    assert not torch.equal(model.encode(ids, mask), model.encode(ids, mask))
    model.eval()
    with torch.no_grad(), profile() as prof:
        first = model.encode(ids, mask)
    assert not [e.name for e in prof.events() if "dropout" in e.name]
    with torch.no_grad():
        assert torch.equal(first, model.encode(ids, mask))


def test_lora_adapters_train_alone():
    model = build_model(ModelConfig(**TINY, lora_rank=2, topic_labels=("a", "b")))
    assert isinstance(model.encoder.blocks[0].attn.q, LoRALinear)
    trainable = mark_only_lora_trainable(model, also_trainable=("topic_head",))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.endswith(("lora_a", "lora_b")) or n.startswith("topic_head") for n in names)
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    ids = torch.randint(2, 100, (2, 5))
    out = model(ids, torch.ones_like(ids), decoder_input_ids=torch.zeros((2, 2), dtype=torch.long))
    out.lm_logits.float().mean().backward()
    assert model.encoder.blocks[0].attn.q.lora_b.grad is not None


def test_zero_shot_scores_are_probabilities(tokenizer):
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY)).eval()
    texts = ["The match ended two all.", "Shares fell sharply on Monday."]
    topics = zero_shot_topics(model, tokenizer, texts, ["sport", "business", "politics"])
    assert [sorted(r.scores) for r in topics] == [["business", "politics", "sport"]] * 2
    assert all(abs(sum(r.scores.values()) - 1) < 1e-5 and r.best in r.scores for r in topics)
    emotions = zero_shot_emotions(model, tokenizer, texts, ["joy", "anger", "fear"])
    assert all(0 < p < 1 for r in emotions for p in r.scores.values())
