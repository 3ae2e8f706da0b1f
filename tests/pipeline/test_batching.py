"""Length bucketing under a token budget, and chunking of long token sequences."""

from __future__ import annotations

import pytest

from model.batching import BatchBudget, padding_waste, plan_batches, split_evenly


def test_every_index_once_and_budget_respected():
    lengths = [5, 300, 17, 17, 512, 64, 1, 250, 90, 90, 90]
    budget = BatchBudget(max_tokens=600, max_rows=3)
    batches = plan_batches(lengths, budget)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 600
    # longest first: the first batch holds the longest item
    assert 4 in batches[0]


def test_bucketing_cuts_padding():
    lengths = [10, 500, 12, 490, 11, 480, 9, 505]
    budget = BatchBudget(max_tokens=10_000, max_rows=2)
    in_order = [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert padding_waste(lengths, plan_batches(lengths, budget)) < 0.05 < padding_waste(lengths, in_order)


def test_item_longer_than_budget_gets_its_own_batch():
    assert plan_batches([100, 3000, 100], BatchBudget(max_tokens=1000, max_rows=8)) == [[1], [0, 2]]


@pytest.mark.parametrize("length", [0, 1, 99, 100, 101, 250, 399, 400, 401, 10_000])
def test_split_evenly_bounds(length):
    tokens = list(range(length))
    chunks, truncated = split_evenly(tokens, max_len=100, max_chunks=4)
    assert 1 <= len(chunks) <= 4
    assert all(len(chunk) <= 100 for chunk in chunks)
    assert truncated == (length > 400)
    assert [t for chunk in chunks for t in chunk] == tokens[:400]
    sizes = [len(chunk) for chunk in chunks]
    assert max(sizes) - min(sizes) <= 1  # no tiny last chunk
