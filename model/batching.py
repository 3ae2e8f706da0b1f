"""Length-bucketed batches under a token budget, and splitting long token sequences into chunks.

Padding is work thrown away: a batch costs rows x its longest row on the encoder and its longest output
on the decoder. Sorting by length before batching keeps rows of similar length together, and a token
budget (rows x longest length) keeps short documents in big batches and long ones in small batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchBudget:
    max_tokens: int  # rows x longest row, per batch
    max_rows: int  # rows per batch, whatever their length

    def __post_init__(self) -> None:
        if self.max_tokens < 1 or self.max_rows < 1:
            raise ValueError(f"batch budget must be positive, got {self}")


def plan_batches(lengths: Sequence[int], budget: BatchBudget) -> list[list[int]]:
    """Indices of `lengths` grouped into batches, longest first (so the largest batch comes first and any
    out-of-memory error shows up at once). Within a batch, rows x the batch's longest length <= max_tokens
    (a row longer than the budget gets a batch of its own) and rows <= max_rows."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        if current and (
            len(current) + 1 > budget.max_rows or (len(current) + 1) * longest > budget.max_tokens
        ):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def padding_waste(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of the batches' token slots (rows x longest row) that are padding."""
    slots = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches if batch)
    return 0.0 if slots == 0 else 1.0 - sum(lengths) / slots


def split_evenly(tokens: Sequence[int], max_len: int, max_chunks: int) -> tuple[list[list[int]], bool]:
    """Split `tokens` into at most `max_chunks` consecutive chunks of at most `max_len` tokens, of near
    equal size (no tiny last chunk). Returns the chunks and whether tokens past the limit were dropped."""
    if max_len < 1 or max_chunks < 1:
        raise ValueError(f"max_len and max_chunks must be positive, got {max_len}, {max_chunks}")
    limit = max_len * max_chunks
    truncated = len(tokens) > limit
    tokens = list(tokens[:limit])
    count = max(1, math.ceil(len(tokens) / max_len))
    size, extra = divmod(len(tokens), count)
    chunks, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        chunks.append(tokens[start:end])
        start = end
    return chunks, truncated
