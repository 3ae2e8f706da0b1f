"""KV cache, padding invariance, finished rows, bf16 masks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from model import load_pretrained
from model.attention import KeyValue
from tests.model.conftest import EOS, random_batch


@pytest.fixture(scope="module")
def model(gated_untied):
    return load_pretrained(gated_untied.folder)


def decode_with_cache(model, ids, mask, decoder_ids, cache):
    with torch.no_grad():
        states = model.encode(ids, mask)
        steps = []
        for t in range(decoder_ids.shape[1]):
            hidden = model.decoder(
                model.token_embedding(decoder_ids[:, t : t + 1]),
                model.decoder.cross_key_values(states),
                mask,
                cache,
                positions=torch.tensor([t]),
            )
            steps.append(model.project_to_vocab(hidden))
    return torch.cat(steps, dim=1)


def test_cached_decoding_equals_full_recomputation(model):
    ids, mask = random_batch(4)
    decoder_ids = torch.randint(2, 96, (4, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model.lm_logits(ids, mask, decoder_ids)
        cache = model.start_decoding(model.encode(ids, mask), mask)
        stepwise = torch.stack([model.decode_step(decoder_ids[:, t : t + 1], cache) for t in range(9)], dim=1)
    assert cache.past_length == 9
    assert (stepwise - full).abs().max() < 1e-4


@dataclass
class PreallocatedCache:
    """A static cache written through the decoder's cache protocol, as a CUDA-graph decoder would do."""

    keys: torch.Tensor  # (L, B, H, T_max, d_kv)
    values: torch.Tensor
    written: int = 0

    @property
    def past_length(self) -> int:
        return self.written

    def key_length(self, new_tokens: int) -> int:
        return self.keys.shape[3]

    def update(self, layer: int, new: KeyValue, positions: torch.Tensor) -> KeyValue:
        self.keys[layer].index_copy_(2, positions, new.key)
        self.values[layer].index_copy_(2, positions, new.value)
        if layer == self.keys.shape[0] - 1:
            self.written += positions.numel()
        return KeyValue(self.keys[layer], self.values[layer])


def test_preallocated_cache_through_the_protocol(model):
    ids, mask = random_batch(5)
    decoder_ids = torch.randint(2, 96, (4, 7), generator=torch.Generator().manual_seed(2))
    c = model.config
    shape = (c.num_decoder_layers, 4, c.num_heads, 12, c.d_kv)
    static = PreallocatedCache(torch.zeros(shape), torch.zeros(shape))
    with torch.no_grad():
        full = model.lm_logits(ids, mask, decoder_ids)
    assert (decode_with_cache(model, ids, mask, decoder_ids, static) - full).abs().max() < 1e-4


def test_outputs_do_not_depend_on_batch_mates(model):
    ids, mask = random_batch(6)
    short = 2  # row 2 is the shortest, padded the most in the batch
    alone_ids = ids[short : short + 1, : int(mask[short].sum())]
    alone_mask = torch.ones_like(alone_ids)
    n = alone_ids.shape[1]
    decoder_ids = torch.zeros((1, 5), dtype=torch.long)
    with torch.no_grad():
        batched_states = model.encode(ids, mask)[short, :n]
        alone_states = model.encode(alone_ids, alone_mask)[0]
        assert (batched_states - alone_states).abs().max() < 1e-4
        batched = model.lm_logits(ids, mask, decoder_ids.expand(4, -1))[short]
        assert (batched - model.lm_logits(alone_ids, alone_mask, decoder_ids)[0]).abs().max() < 1e-4
    for beams in (1, 3):
        batched_out = model.generate(ids, mask, max_new_tokens=12, num_beams=beams)
        for row in range(4):
            row_ids = ids[row : row + 1, : int(mask[row].sum())]
            alone_out = model.generate(row_ids, torch.ones_like(row_ids), max_new_tokens=12, num_beams=beams)[
                0
            ]
            assert batched_out[row, : alone_out.shape[0]].tolist() == alone_out.tolist()
            assert (batched_out[row, alone_out.shape[0] :] == 0).all()


def test_finished_rows_are_padded_never_continued(model):
    ids, mask = random_batch(2)
    for beams in (1, 3):
        out = model.generate(ids, mask, max_new_tokens=16, num_beams=beams)
        for row in out.tolist():
            if EOS in row:
                end = row.index(EOS)
                assert all(token == 0 for token in row[end + 1 :]), row
                assert 0 not in row[:end], row


def test_min_new_tokens_and_precomputed_encoder_states(model):
    ids, mask = random_batch(2)
    out = model.generate(ids, mask, max_new_tokens=10, min_new_tokens=8)
    assert not (out[:, :8] == EOS).any()
    with torch.no_grad():
        states = model.encode(ids, mask)
    assert torch.equal(
        model.generate(ids, mask, max_new_tokens=10, encoder_states=states),
        model.generate(ids, mask, max_new_tokens=10),
    )


def test_bf16_masks_stay_correct(gated_untied):
    model = load_pretrained(gated_untied.folder, dtype=torch.bfloat16)
    ids, mask = random_batch(7)
    scrambled = ids.masked_fill(mask == 0, 0) + (mask == 0).long() * torch.randint(2, 96, ids.shape)
    decoder_ids = torch.zeros((4, 4), dtype=torch.long)
    with torch.no_grad():
        states = model.encode(ids, mask)
        logits = model.lm_logits(ids, mask, decoder_ids)
        assert torch.isfinite(states).all() and torch.isfinite(logits).all()
        # padding is masked exactly: whatever sits in padded positions leaves real tokens untouched
        assert torch.equal(logits, model.lm_logits(scrambled, mask, decoder_ids))
        valid = mask.bool()
        assert torch.equal(states[valid], model.encode(scrambled, mask)[valid])
        # and a short document alone agrees with itself inside a padded batch (bf16 rounding aside)
        n = int(mask[2].sum())
        alone = model.lm_logits(ids[2:3, :n], mask[2:3, :n], decoder_ids[:1])[0].float()
        assert (logits[2].float() - alone).abs().max() <= 0.05 * alone.abs().max()
    out = model.generate(ids, mask, max_new_tokens=6, num_beams=2)
    assert out.shape[0] == 4
