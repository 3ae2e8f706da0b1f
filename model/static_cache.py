"""A preallocated decoding state for greedy decoding: every buffer has a fixed address.

CUDA graphs replay kernels on the exact memory they were captured with, so the fast decoder keeps all of
its state here and only ever writes into it in place: the self-attention K/V of every generated position,
the cross-attention K/V computed once from the encoder states, the encoder padding mask as an additive
bias, the next input token, the running/finished flags, the generated tokens and the step counter.

A batch occupies rows ``[0, n)`` of the buffers. When rows finish, ``compact`` moves the rows that are
still decoding to the front, so that later steps run on a smaller ``n`` (a smaller captured graph) and
finished documents stop costing work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

# rows moved at a time by compact(): bounds the temporary copy while rows slide to the front
_COMPACT_CHUNK_ROWS = 16


@dataclass(frozen=True)
class CacheShape:
    layers: int
    heads: int
    head_dim: int
    rows: int  # batch capacity
    source_len: int  # encoder positions (cross-attention keys)
    target_len: int  # generated positions (self-attention keys)

    def fits(self, rows: int, source_len: int, target_len: int) -> bool:
        return rows <= self.rows and source_len <= self.source_len and target_len <= self.target_len


class StaticDecodeCache:
    def __init__(self, shape: CacheShape, device: torch.device, dtype: torch.dtype, pad_token_id: int):
        L, H, D = shape.layers, shape.heads, shape.head_dim
        B, S, T = shape.rows, shape.source_len, shape.target_len
        self.shape = shape
        self.pad_token_id = pad_token_id
        zeros = dict(device=device, dtype=dtype)
        self.self_kv = torch.zeros(L, 2, B, H, T, D, **zeros)  # generated positions' keys and values
        self.cross_kv = torch.zeros(L, 2, B, H, S, D, **zeros)  # encoder positions' keys and values
        self.cross_bias = torch.zeros(B, 1, 1, S, **zeros)  # 0 for real encoder tokens, finfo.min for padding
        self.tokens = torch.zeros(B, dtype=torch.long, device=device)  # input token of the next step
        self.finished = torch.zeros(B, dtype=torch.bool, device=device)
        self.out = torch.full((B, T), pad_token_id, dtype=torch.long, device=device)  # generated tokens
        self.step = torch.zeros(1, dtype=torch.long, device=device)  # position of the next token

    @property
    def nbytes(self) -> int:
        tensors = (self.self_kv, self.cross_kv, self.cross_bias, self.tokens, self.finished, self.out)
        return sum(t.numel() * t.element_size() for t in tensors)

    @torch.no_grad()
    def reset(self, size: int, rows: int, start_token_id: int) -> None:
        """Start a batch of `size` documents in rows [0, rows): rows past `size` are fillers (finished from the
        start). Every encoder position is blocked until load() unblocks the real ones."""
        self.cross_bias[:rows].fill_(torch.finfo(self.cross_bias.dtype).min)
        self.cross_bias[size:rows, 0, 0, 0] = 0.0  # fillers attend to one key: finite scores, no NaN
        self.tokens[:rows].fill_(start_token_id)
        self.finished[:rows].fill_(False)
        self.finished[size:rows].fill_(True)
        self.out[:rows].fill_(self.pad_token_id)
        self.step.zero_()

    @torch.no_grad()
    def load(
        self,
        first_row: int,
        cross_kv: Iterable[torch.Tensor],  # per layer (2, b, H, S, D): keys and values of the encoder states
        attention_mask: torch.Tensor,  # (b, S) 1 for real encoder tokens
    ) -> None:
        """Write the encoder K/V and padding of rows [first_row, first_row + b)."""
        b, S = attention_mask.shape
        rows = slice(first_row, first_row + b)
        for layer, kv in enumerate(cross_kv):
            self.cross_kv[layer, :, rows, :, :S].copy_(kv)
        self.cross_bias[rows, 0, 0, :S].masked_fill_(attention_mask.bool(), 0.0)

    @torch.no_grad()
    def compact(self, keep: torch.Tensor) -> None:
        """Move rows ``keep`` (ascending, on this device) to the front: row keep[i] becomes row i.

        Rows only move towards the front (keep[i] >= i), so copying in ascending chunks never overwrites a
        row that a later chunk still has to read, and the temporary copy stays one chunk big.
        """
        for start in range(0, keep.numel(), _COMPACT_CHUNK_ROWS):
            source = keep[start : start + _COMPACT_CHUNK_ROWS]
            target = slice(start, start + source.numel())
            self.self_kv[:, :, target] = self.self_kv.index_select(2, source)
            self.cross_kv[:, :, target] = self.cross_kv.index_select(2, source)
            self.cross_bias[target] = self.cross_bias.index_select(0, source)
            self.tokens[target] = self.tokens.index_select(0, source)
            self.finished[target] = self.finished.index_select(0, source)
            self.out[target] = self.out.index_select(0, source)

    def snapshot(self) -> tuple[torch.Tensor, ...]:
        """The small state a trial step changes (graph warm-up, timing); restore() puts it back.

        A trial step also writes K/V and an output token at the current position, but the real step
        overwrites exactly those slots."""
        return self.step.clone(), self.tokens.clone(), self.finished.clone()

    def restore(self, saved: tuple[torch.Tensor, ...]) -> None:
        for buffer, value in zip((self.step, self.tokens, self.finished), saved, strict=True):
            buffer.copy_(value)
