"""Decoder key/value cache.

Self-attention K/V grow by one entry per decoded position; cross-attention K/V are computed once from the
encoder states and reused at every step. The decoder talks to its cache only through ``SelfAttentionCache``
(``past_length``, ``key_length``, ``update``), so a preallocated static cache for CUDA graphs can replace
``DecoderCache`` without touching the decoder: its ``update`` writes the new entries at ``positions`` into
fixed buffers and returns the whole buffers, and its ``key_length`` is the buffer length (slots not yet
written are hidden by the causal mask, which compares key slots against ``positions``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from model.attention import KeyValue


class SelfAttentionCache(Protocol):
    @property
    def past_length(self) -> int: ...

    def key_length(self, new_tokens: int) -> int:
        """Number of key slots the next step attends over (cached + new)."""
        ...

    def update(self, layer: int, new: KeyValue, positions: torch.Tensor) -> KeyValue:
        """Store this step's K/V (B, H, Tq, d_kv) for `layer`; return all K/V to attend over."""
        ...


@dataclass
class DecoderCache:
    """Dynamic cache for one batch of decoding rows."""

    cross: list[KeyValue]  # per layer, (B, H, S, d_kv), from the encoder states
    cross_mask: torch.Tensor  # (B, S) bool, True for real encoder tokens
    self_attn: list[KeyValue | None] = field(default_factory=list)  # per layer, (B, H, T_past, d_kv)

    def __post_init__(self) -> None:
        if not self.self_attn:
            self.self_attn = [None] * len(self.cross)

    @property
    def batch_size(self) -> int:
        return self.cross_mask.shape[0]

    @property
    def past_length(self) -> int:
        first = self.self_attn[0]
        return 0 if first is None else first.key.shape[2]

    def key_length(self, new_tokens: int) -> int:
        return self.past_length + new_tokens

    def update(self, layer: int, new: KeyValue, positions: torch.Tensor) -> KeyValue:
        past = self.self_attn[layer]
        if past is not None:
            new = KeyValue(torch.cat([past.key, new.key], dim=2), torch.cat([past.value, new.value], dim=2))
        self.self_attn[layer] = new
        return new

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep (and reorder to) the given batch rows: beam reordering, or finished rows leaving the batch."""
        self.cross = [kv.index_select(rows) for kv in self.cross]
        self.cross_mask = self.cross_mask.index_select(0, rows)
        self.self_attn = [None if kv is None else kv.index_select(rows) for kv in self.self_attn]
