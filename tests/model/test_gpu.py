"""The same parity and mask checks on a CUDA device (skipped without one)."""

from __future__ import annotations

import pytest
import torch

from model import load_pretrained
from tests.model.conftest import random_batch
from tests.model.test_parity import GENERATION_SETTINGS, reference_generate

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def cuda_pair(checkpoint):
    reference = checkpoint.reference.to("cuda")
    yield reference, load_pretrained(checkpoint.folder, device="cuda")
    checkpoint.reference.to("cpu")


def test_cuda_fp32_logits_match(cuda_pair):
    reference, model = cuda_pair
    ids, mask = (t.cuda() for t in random_batch())
    decoder_ids = ids[:, :7].clone()
    decoder_ids[:, 0] = 0
    with torch.no_grad():
        ref = reference(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
        state_diff = (model.encode(ids, mask) - ref.encoder_last_hidden_state).abs().max().item()
        logit_diff = (model.lm_logits(ids, mask, decoder_ids) - ref.logits).abs().max().item()
    print(f"cuda max abs diff: encoder {state_diff:.2e}, logits {logit_diff:.2e}")
    assert state_diff < 1e-4 and logit_diff < 1e-4


@pytest.mark.parametrize(
    "settings", GENERATION_SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items())
)
def test_cuda_generate_matches_transformers(cuda_pair, settings):
    reference, model = cuda_pair
    ids, mask = (t.cuda() for t in random_batch(2))
    expected = reference_generate(reference, ids, mask, **settings)
    assert model.generate(ids, mask, max_new_tokens=16, **settings).tolist() == expected.tolist()


def test_cuda_bf16_masks(checkpoint):
    model = load_pretrained(checkpoint.folder, device="cuda", dtype=torch.bfloat16)
    ids, mask = (t.cuda() for t in random_batch(7, batch=4, length=200))
    scrambled = torch.where(mask.bool(), ids, torch.randint_like(ids, 2, 96))
    decoder_ids = torch.zeros((4, 4), dtype=torch.long, device="cuda")
    with torch.no_grad():
        logits = model.lm_logits(ids, mask, decoder_ids)
        assert torch.isfinite(logits).all()
        scrambled_diff = (logits - model.lm_logits(scrambled, mask, decoder_ids)).abs().max().item()
        n = int(mask[2].sum())
        alone = model.lm_logits(ids[2:3, :n], mask[2:3, :n], decoder_ids[:1])[0].float()
        alone_diff = (logits[2].float() - alone).abs().max().item()
    print(f"bf16 cuda: scrambled padding diff {scrambled_diff:.2e}, alone vs batched {alone_diff:.2e}")
    assert scrambled_diff == 0.0
    assert alone_diff <= 0.05 * alone.abs().max().item()
    out = model.generate(ids, mask, max_new_tokens=8, num_beams=3)
    assert out.shape[0] == 4
