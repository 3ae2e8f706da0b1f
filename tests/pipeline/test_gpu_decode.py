"""The CUDA-graph decoder on a GPU: captured steps give the same tokens as the same steps run eagerly, and
the reference loop's tokens in fp32 (skipped without CUDA).

bench/gpu_check.sh runs this file with pytest when the GPU machine has it, else as a script
(`python tests/pipeline/test_gpu_decode.py`): it needs nothing but torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

if __name__ == "__main__":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from model.decode_step import ATTENTION_KINDS  # noqa: E402
from model.fast_decode import GreedyDecoder  # noqa: E402
from tests.pipeline.decoding_cases import ragged_batch, stop_steps, tiny_model  # noqa: E402

try:
    import pytest

    pytestmark = [
        pytest.mark.gpu,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    ]
except ImportError:  # the GPU machine may not have pytest
    pytest = None

EAGER_SAME_SHAPES = dict(
    use_cuda_graphs=False, batch_ladder=True, sync_every=8, key_block=16, source_block=64
)


def _cuda_case(dtype: torch.dtype, gated: bool = True, rows: int = 13, width: int = 40, seed: int = 0):
    model = tiny_model(gated=gated).to(device="cuda", dtype=dtype)
    ids, mask = (t.cuda() for t in ragged_batch(rows, width, seed))
    with torch.no_grad():
        return model, model.encode(ids, mask), mask, ids


def test_graphs_equal_eager_steps_bf16():
    for gated, padded in ((True, True), (False, True), (True, False)):
        model, states, mask, _ = _cuda_case(torch.bfloat16, gated, width=64)
        if not padded:  # no padding at all (64 = a whole source block): lean steps drop the cross mask
            mask = torch.ones_like(mask)
        for kind in ATTENTION_KINDS:
            eager = GreedyDecoder(model, attention=kind, **EAGER_SAME_SHAPES)
            expected = eager.generate(states, mask, 40)
            graphed = GreedyDecoder(model, attention=kind)
            out = graphed.generate(states, mask, 40)
            assert graphed.stats.graphs_captured > 0 and not graphed.stats.graph_error, graphed.stats
            assert graphed._cross_masked == eager._cross_masked == padded
            assert out.tolist() == expected.tolist(), (gated, padded, kind)


def test_graphs_equal_reference_loop_fp32():
    for gated in (True, False):
        model, states, mask, ids = _cuda_case(torch.float32, gated)
        for min_new_tokens in (0, 9):
            expected = model.generate(ids, mask, max_new_tokens=30, min_new_tokens=min_new_tokens)
            decoder = GreedyDecoder(model)  # attention chosen by timing
            out = decoder.generate(states, mask, 30, min_new_tokens)
            assert out.tolist() == expected.tolist(), (gated, min_new_tokens, decoder.stats)
            assert decoder.stats.attention in ATTENTION_KINDS
            assert len(set(stop_steps(expected))) > 3


def test_ngram_bans_under_graphs_equal_the_reference_loop_fp32():
    model, states, mask, ids = _cuda_case(torch.float32)
    expected = model.generate(ids, mask, max_new_tokens=30, min_new_tokens=4, no_repeat_ngram_size=3)
    decoder = GreedyDecoder(model, attention="sdpa")
    out = decoder.generate(states, mask, 30, 4, no_repeat_ngram_size=3)
    assert decoder.stats.graph_steps > 0 and not decoder.stats.graph_error, decoder.stats
    assert out.tolist() == expected.tolist()


def test_attention_timing_then_capture_at_small_batches_bf16():
    """The first H200 run lost its graphs at batches 1 and 32: after the attention-timing graphs were
    dropped, the next capture named their pool again (allocator assert `use_count > 0`)."""
    for rows in (1, 32):
        model, states, mask, _ = _cuda_case(torch.bfloat16, rows=rows, width=64)
        decoder = GreedyDecoder(model)  # lean (bf16): attention chosen by timing captured steps
        first = decoder.generate(states, mask, 40)
        assert decoder.generate(states, mask, 40).tolist() == first.tolist()  # graphs replayed again
        stats = decoder.stats
        assert not stats.graph_error and stats.eager_steps == 0 and stats.graph_steps == stats.steps, stats
        assert set(stats.attention_ms) == set(ATTENTION_KINDS), stats


def test_finished_rows_are_compacted_under_graphs():
    model, states, mask, ids = _cuda_case(torch.float32, rows=40, width=70, seed=3)
    decoder = GreedyDecoder(model, attention="sdpa")
    out = decoder.generate(states, mask, 40)
    assert out.tolist() == model.generate(ids, mask, max_new_tokens=40).tolist()
    assert decoder.stats.compactions > 0
    # reuse across calls with other shapes: graphs are keyed by shape, the cache grows when needed
    for rows, width, seed in [(5, 20, 4), (64, 100, 5)]:
        model_ids, small_mask = (t.cuda() for t in ragged_batch(rows, width, seed))
        with torch.no_grad():
            small_states = model.encode(model_ids, small_mask)
        expected = model.generate(model_ids, small_mask, max_new_tokens=24)
        assert decoder.generate(small_states, small_mask, 24).tolist() == expected.tolist()


def _main() -> int:
    if not torch.cuda.is_available():
        print("SKIP: no CUDA device")
        return 0
    failures = 0
    for name, test in sorted((n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)):
        try:
            test()
            print(f"PASS {name}", flush=True)
        except Exception as err:  # report every test, then fail the run
            failures += 1
            print(f"FAIL {name}: {type(err).__name__}: {err}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(_main())
