"""Tiny random models and batches shared by the CPU and GPU decoding tests (torch only, no fixtures)."""

from __future__ import annotations

import torch

from bench.hf_reference import scale_eos_logit
from model import ModelConfig, MultiTaskModel, build_model

VOCAB = 300


def tiny_model(gated: bool = True) -> MultiTaskModel:
    """A random model whose rows stop at different steps (EOS made likely enough), in eval mode.
    Seeds and EOS factors picked by hand: tiny random models otherwise repeat one token forever."""
    seed, eos_factor = (0, 2.5) if gated else (1, 16.0)
    config = ModelConfig(
        vocab_size=VOCAB,
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=3,
        num_heads=4,
        feed_forward_proj="gated-gelu" if gated else "relu",
        tie_word_embeddings=not gated,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = build_model(config).eval()
    finally:
        torch.random.set_rng_state(generator_state)
    scale_eos_logit(model, eos_factor)
    return model


def ragged_batch(rows: int = 13, width: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids with lengths from 1 to width, EOS closing every row."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, width + 1, (rows,), generator=g)
    lengths[0] = width
    ids = torch.randint(2, VOCAB, (rows, width), generator=g)
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, 0)
    ids[torch.arange(rows), lengths - 1] = 1
    return ids, mask


def stop_steps(tokens: torch.Tensor, eos_token_id: int = 1) -> list[int]:
    """Per row, the 1-based step of its EOS (0: never stopped)."""
    hit = tokens == eos_token_id
    return torch.where(hit.any(1), hit.int().argmax(1) + 1, 0).tolist()
