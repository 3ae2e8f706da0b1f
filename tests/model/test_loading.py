"""Checkpoint loading rules and their errors; our own save/reload format."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from model import CheckpointError, ConfigError, MultiTaskModel, build_model, load_pretrained
from model.checkpoint import t5_key_to_ours
from tests.model.conftest import random_batch


def copy_checkpoint(src, dst):
    shutil.copytree(src, dst)
    return dst, load_file(str(dst / "model.safetensors"))


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(tmp_path / "nowhere")


def test_folder_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_pretrained(tmp_path)


def test_unreachable_hub_id_is_a_clear_error(monkeypatch):
    import huggingface_hub

    def offline(**kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(FileNotFoundError, match="could not be fetched from the hub"):
        load_pretrained("no-such-org/no-such-model")


def test_non_t5_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    save_file({"embeddings.word_embeddings.weight": torch.zeros(4, 4)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ConfigError, match="not a T5 checkpoint.*bert"):
        load_pretrained(tmp_path)


def test_missing_key_is_named(gated_untied, tmp_path):
    folder, state = copy_checkpoint(gated_untied.folder, tmp_path / "ckpt")
    del state["decoder.block.1.layer.2.DenseReluDense.wi_1.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys: \['decoder.blocks.1.ff.wi_1.weight'\]"):
        load_pretrained(folder)


def test_extra_key_is_named(gated_untied, tmp_path):
    folder, state = copy_checkpoint(gated_untied.folder, tmp_path / "ckpt")
    state["encoder.block.0.layer.0.SelfAttention.rotary.weight"] = torch.zeros(2)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="unexpected.*SelfAttention.rotary.weight"):
        load_pretrained(folder)


def test_extra_block_is_unexpected(gated_untied, tmp_path):
    folder, state = copy_checkpoint(gated_untied.folder, tmp_path / "ckpt")
    state["encoder.block.7.layer.0.layer_norm.weight"] = torch.ones(32)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected keys: \['encoder.blocks.7.attn_norm.weight'\]"):
        load_pretrained(folder)


def test_shape_mismatch_is_named(gated_untied, tmp_path):
    folder, state = copy_checkpoint(gated_untied.folder, tmp_path / "ckpt")
    state["encoder.block.0.layer.1.DenseReluDense.wo.weight"] = torch.zeros(32, 40)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(
        CheckpointError, match=r"encoder.blocks.0.ff.wo.weight: checkpoint \(32, 40\) vs model \(32, 48\)"
    ):
        load_pretrained(folder)


def test_pytorch_bin_with_embedding_aliases_and_unused_cross_bias(relu_tied, tmp_path):
    """Original T5 checkpoints: pytorch_model.bin, per-stack copies of the embedding, lm_head equal to
    the embedding (tied), and a cross-attention bias table that T5 never uses."""
    folder = tmp_path / "t5"
    folder.mkdir()
    shutil.copy(relu_tied.folder / "config.json", folder)
    state = load_file(str(relu_tied.folder / "model.safetensors"))
    state["encoder.embed_tokens.weight"] = state["shared.weight"].clone()
    state["decoder.embed_tokens.weight"] = state["shared.weight"].clone()
    state["lm_head.weight"] = state["shared.weight"].clone()
    state["decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"] = torch.zeros(8, 4)
    torch.save(state, folder / "pytorch_model.bin")
    model = load_pretrained(folder)
    assert model.lm_head is None and model.config.feed_forward_proj == "relu"
    ids, mask = random_batch()
    dec = torch.zeros((4, 3), dtype=torch.long)
    with torch.no_grad():
        ref = relu_tied.reference(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        assert (model.lm_logits(ids, mask, dec) - ref).abs().max() < 1e-4


def test_differing_stack_embedding_is_refused(relu_tied, tmp_path):
    folder, state = copy_checkpoint(relu_tied.folder, tmp_path / "ckpt")
    state["decoder.embed_tokens.weight"] = torch.zeros_like(state["shared.weight"])
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="decoder.embed_tokens.weight differs"):
        load_pretrained(folder)


def test_key_map_covers_both_feed_forward_kinds():
    assert (
        t5_key_to_ours("encoder.block.3.layer.1.DenseReluDense.wi.weight") == "encoder.blocks.3.ff.wi.weight"
    )
    assert (
        t5_key_to_ours("decoder.block.0.layer.2.DenseReluDense.wi_0.weight")
        == "decoder.blocks.0.ff.wi_0.weight"
    )
    assert (
        t5_key_to_ours("decoder.block.2.layer.1.EncDecAttention.k.weight")
        == "decoder.blocks.2.cross_attn.k.weight"
    )
    assert t5_key_to_ours("pooler.dense.weight") is None


def test_t5_checkpoint_with_heads_and_lora(gated_untied):
    model = load_pretrained(
        gated_untied.folder, topic_labels=("a", "b", "c"), emotion_labels=("joy",), lora_rank=2
    )
    ids, mask = random_batch()
    with torch.no_grad():
        out = model.classify(model.encode(ids, mask), mask)
        ref = gated_untied.reference(input_ids=ids, attention_mask=mask, decoder_input_ids=ids[:, :3]).logits
        # LoRA starts as a no-op: the loaded model still equals the checkpoint
        assert (model.lm_logits(ids, mask, ids[:, :3]) - ref).abs().max() < 1e-4
    assert out.topic_logits.shape == (4, 3) and out.emotion_logits.shape == (4, 1)


def test_save_and_reload_round_trip_exactly(gated_untied, tmp_path):
    model = load_pretrained(gated_untied.folder, topic_labels=("x", "y"), emotion_labels=("e1", "e2", "e3"))
    model.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["topic_labels"] == ["x", "y"] and config["format"].startswith("leximind.model")
    for reloaded in (MultiTaskModel.from_folder(tmp_path / "saved"), load_pretrained(tmp_path / "saved")):
        assert reloaded.config == model.config
        original, again = model.state_dict(), reloaded.state_dict()
        assert original.keys() == again.keys()
        assert all(torch.equal(original[k], again[k]) for k in original)
        assert not reloaded.training


def test_saved_folder_missing_weights(tmp_path):
    from model import ModelConfig

    build_model(
        ModelConfig(d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4, vocab_size=50)
    ).save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="needs config.json and model.safetensors"):
        MultiTaskModel.from_folder(tmp_path / "m")


def test_device_and_dtype_arguments(gated_untied):
    model = load_pretrained(gated_untied.folder, device="cpu", dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16 and not model.training
