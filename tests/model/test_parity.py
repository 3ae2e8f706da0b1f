"""Our stack against transformers' T5ForConditionalGeneration on the same tiny checkpoints (fp32)."""

from __future__ import annotations

import pytest
import torch

from model import load_pretrained
from tests.model.conftest import EOS, random_batch, write_t5_checkpoint

TOLERANCE = 1e-4

GENERATION_SETTINGS = [
    dict(num_beams=1),
    dict(num_beams=1, no_repeat_ngram_size=2, min_new_tokens=6, repetition_penalty=1.5),
    dict(num_beams=3),
    dict(num_beams=3, length_penalty=0.6),
    dict(num_beams=3, length_penalty=2.0),
    dict(num_beams=3, no_repeat_ngram_size=3, min_new_tokens=5, repetition_penalty=1.3),
]


def reference_generate(reference, ids, mask, **settings) -> torch.Tensor:
    """transformers' output without the start token, with pad after the first EOS (transformers' beam
    search fills finished rows with EOS instead: https://github.com/huggingface/transformers, `_beam_search`)."""
    out = reference.generate(
        input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=16, **settings
    )
    out = out[:, 1:]
    after_eos = (out == EOS).long().cumsum(1) - (out == EOS).long() > 0
    return out.masked_fill(after_eos, 0)


def test_encoder_states_and_logits_match(checkpoint):
    model = load_pretrained(checkpoint.folder)
    ids, mask = random_batch()
    decoder_ids = torch.randint(2, 96, (ids.shape[0], 11), generator=torch.Generator().manual_seed(5))
    decoder_ids[:, 0] = 0
    with torch.no_grad():
        ref = checkpoint.reference(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
        states = model.encode(ids, mask)
        logits = model.lm_logits(ids, mask, decoder_ids)
    state_diff = (states - ref.encoder_last_hidden_state).abs().max().item()
    logit_diff = (logits - ref.logits).abs().max().item()
    print(f"max abs diff: encoder {state_diff:.2e}, logits {logit_diff:.2e}")
    assert state_diff < TOLERANCE
    assert logit_diff < TOLERANCE


def test_head_kind_follows_checkpoint(gated_untied, relu_tied):
    flan = load_pretrained(gated_untied.folder)
    assert flan.lm_head is not None and not flan.config.tie_word_embeddings
    assert flan.config.scale_decoder_outputs is False
    t5 = load_pretrained(relu_tied.folder)
    assert t5.lm_head is None and t5.config.tie_word_embeddings and t5.config.scale_decoder_outputs


def test_decoder_deeper_than_encoder(tmp_path):
    ckpt = write_t5_checkpoint(
        tmp_path, "gated-gelu", untied=True, seed=3, eos_boost=0.0, num_decoder_layers=3
    )
    model = load_pretrained(ckpt.folder)
    ids, mask = random_batch(1)
    decoder_ids = torch.zeros((ids.shape[0], 4), dtype=torch.long)
    with torch.no_grad():
        ref = ckpt.reference(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
        assert (model.lm_logits(ids, mask, decoder_ids) - ref).abs().max() < TOLERANCE


@pytest.mark.parametrize(
    "settings", GENERATION_SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items())
)
def test_generate_matches_transformers(checkpoint, settings):
    model = load_pretrained(checkpoint.folder)
    ids, mask = random_batch(2)
    expected = reference_generate(checkpoint.reference, ids, mask, **settings)
    ours = model.generate(ids, mask, max_new_tokens=16, **settings)
    assert ours.tolist() == expected.tolist()


def test_generation_cases_are_not_trivial(checkpoint):
    """The parity cases only mean something if some rows stop early at EOS and others run to the limit."""
    model = load_pretrained(checkpoint.folder)
    ids, mask = random_batch(2)
    for beams in (1, 3):
        out = model.generate(ids, mask, max_new_tokens=16, num_beams=beams)
        ended = (out == EOS).any(1)
        assert ended.any() and not ended.all() and len(set(out.flatten().tolist())) > 4, out
