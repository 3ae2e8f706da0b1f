"""The static-cache greedy decoder (the GPU fast path) against the reference loop, on the CPU in fp32.

Every piece of the GPU path except the graph capture itself runs here: padded batch sizes (the ladder),
finished-flag checks every few steps, compaction of finished rows, key lengths rounded up to blocks,
padded encoder lengths, cache reuse across calls. tests/pipeline/test_gpu_decode.py adds the capture.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from model.fast_decode import GreedyDecoder, ladder_size
from model.static_cache import CacheShape, StaticDecodeCache
from tests.pipeline.decoding_cases import ragged_batch, stop_steps, tiny_model

GPU_LIKE = dict(batch_ladder=True, sync_every=4, key_block=16, source_block=64, screen_head=False)
LAYOUTS = {"cpu": {}, "gpu-like": GPU_LIKE, "gpu-like-lean": {**GPU_LIKE, "lean": True}}


@pytest.fixture(scope="module", params=["gated-untied", "relu-tied"])
def model(request):
    return tiny_model(gated=request.param == "gated-untied")


@pytest.fixture(scope="module")
def reference(model):
    """The reference loop's output on ragged_batch(), per min_new_tokens."""
    ids, mask = ragged_batch()
    return {m: model.generate(ids, mask, max_new_tokens=30, min_new_tokens=m) for m in (0, 9)}


@pytest.mark.parametrize("attention", ["sdpa", "matmul"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("min_new_tokens", [0, 9])
def test_equals_reference_greedy(model, reference, attention, layout, min_new_tokens):
    ids, mask = ragged_batch()
    expected = reference[min_new_tokens]
    decoder = GreedyDecoder(model, attention=attention, **LAYOUTS[layout])
    with torch.no_grad():
        got = decoder.generate(model.encode(ids, mask), mask, 30, min_new_tokens)
    assert got.tolist() == expected.tolist()
    stops = stop_steps(expected)
    assert len(set(stops)) > 3, f"rows should stop at different steps, got {stops}"
    if min_new_tokens:
        assert all(s == 0 or s > min_new_tokens for s in stops)
    assert decoder.stats.compactions > 0


def repeated_ngrams(tokens: torch.Tensor, n: int, start: int = 0, eos: int = 1) -> int:
    """How many n-grams repeat an earlier one, over rows read as [start] + tokens up to their EOS."""
    repeats = 0
    for row in tokens.tolist():
        row = [start] + (row[: row.index(eos) + 1] if eos in row else row)
        grams = [tuple(row[i : i + n]) for i in range(len(row) - n + 1)]
        repeats += len(grams) - len(set(grams))
    return repeats


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("n", [2, 3])
def test_no_repeat_ngrams_as_the_reference_loop_bans_them(model, layout, n):
    ids, mask = ragged_batch()
    plain = model.generate(ids, mask, max_new_tokens=30, min_new_tokens=4)
    assert repeated_ngrams(plain, n) > 5  # tiny random models repeat themselves: the rule has work to do
    expected = model.generate(ids, mask, max_new_tokens=30, min_new_tokens=4, no_repeat_ngram_size=n)
    decoder = GreedyDecoder(model, **LAYOUTS[layout])
    with torch.no_grad():
        got = decoder.generate(model.encode(ids, mask), mask, 30, 4, no_repeat_ngram_size=n)
    assert got.tolist() == expected.tolist()
    assert repeated_ngrams(got, n) == 0


@pytest.mark.parametrize("attention", ["sdpa", "matmul"])
def test_lean_step_without_padding_skips_the_mask(model, attention):
    ids, _ = ragged_batch(9, 64, seed=5)
    ids = ids.masked_fill(ids == 0, 7)  # every row 64 tokens: no encoder padding at all
    ids[:, -1] = 1
    mask = torch.ones_like(ids)
    expected = model.generate(ids, mask, max_new_tokens=25)
    decoder = GreedyDecoder(model, attention=attention, **LAYOUTS["gpu-like-lean"])
    with torch.no_grad():
        got = decoder.generate(model.encode(ids, mask), mask, 25)
    assert not decoder._cross_masked
    assert got.tolist() == expected.tolist()


def test_finished_rows_leave_the_batch(model, reference):
    ids, mask = ragged_batch()
    decoder = GreedyDecoder(model)  # CPU layout: checks after every step, compacts at once
    with torch.no_grad():
        out = decoder.generate(model.encode(ids, mask), mask, 30)
    assert out.tolist() == reference[0].tolist()
    assert decoder.stats.wasted_fraction == 0.0
    assert decoder.stats.row_steps == sum(s or 30 for s in stop_steps(out))


def test_cache_is_reused_and_grown_across_calls(model):
    decoder = GreedyDecoder(model, **GPU_LIKE)
    with torch.no_grad():
        for rows, width, new_tokens, seed in [
            (13, 40, 30, 1),
            (3, 10, 12, 2),
            (20, 70, 40, 3),
            (5, 40, 30, 4),
        ]:
            ids, mask = ragged_batch(rows, width, seed)
            expected = model.generate(ids, mask, max_new_tokens=new_tokens)
            got = decoder.generate(model.encode(ids, mask), mask, new_tokens)
            assert got.tolist() == expected.tolist()
    shape = decoder._cache.shape
    assert (shape.rows, shape.source_len, shape.target_len) == (ladder_size(20), 128, 48)


def test_single_row_and_single_token(model):
    ids, mask = ragged_batch(1, 7)
    decoder = GreedyDecoder(model, **GPU_LIKE)
    with torch.no_grad():
        states = model.encode(ids, mask)
        for new_tokens in (1, 2, 17):
            expected = model.generate(ids, mask, max_new_tokens=new_tokens)
            assert decoder.generate(states, mask, new_tokens).tolist() == expected.tolist()


def test_ladder_sizes():
    sizes = sorted({ladder_size(r) for r in range(1, 600)})
    assert sizes[:10] == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]
    assert all(ladder_size(r) >= r and ladder_size(r) < 1.5 * r + 1 for r in range(1, 600))


def test_compact_moves_rows_to_the_front():
    cache = StaticDecodeCache(
        CacheShape(2, 2, 4, 40, 5, 6), torch.device("cpu"), torch.float32, pad_token_id=0
    )
    for t in (cache.self_kv, cache.cross_kv):
        t.copy_(torch.arange(40, dtype=torch.float32).view(1, 1, 40, 1, 1, 1).expand_as(t))
    cache.tokens.copy_(torch.arange(40))
    cache.out.copy_(torch.arange(40)[:, None].expand(40, 6))
    keep = torch.tensor([1, 2, 5, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 39])
    cache.compact(keep)
    n = keep.numel()
    assert cache.tokens[:n].tolist() == keep.tolist()
    assert cache.out[:n, 0].tolist() == keep.tolist()
    assert cache.self_kv[1, 1, :n, 1, 4, 3].tolist() == keep.float().tolist()
    assert cache.cross_kv[0, 0, :n, 0, 0, 0].tolist() == keep.float().tolist()


# ops that read a device value on the host or build a tensor from Python data: either breaks CUDA graph
# capture (or silently freezes a value into the graph)
HOST_BOUND_OPS = {"_local_scalar_dense", "lift_fresh", "nonzero", "masked_select", "unique", "item"}


def test_decode_step_is_capturable(model):
    """A CPU stand-in for CUDA graph capture: the step must run entirely on the device."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from model.decode_step import OutputRules, decode_step

    class RecordOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    ids, mask = ragged_batch()
    decoder = GreedyDecoder(model, **GPU_LIKE)
    with torch.inference_mode():
        decoder.generate(model.encode(ids, mask), mask, 20)  # builds the cache
        for attention, lean in itertools.product(("sdpa", "matmul"), (False, True)):
            recorder = RecordOps()
            with recorder:
                decode_step(
                    decoder.weights,
                    decoder._cache,
                    decoder._bias_table,
                    16,
                    16,
                    64,
                    1,
                    OutputRules(min_new_tokens=5, no_repeat_ngram_size=3),
                    attention,
                    lean,
                    not lean,
                )
            assert not recorder.names & HOST_BOUND_OPS, recorder.names & HOST_BOUND_OPS
            assert "index_copy_" in recorder.names  # the step wrote into the cache in place


def test_shared_fusion_keeps_the_model_intact():
    """On CUDA the model's projection weights become views into the fused tensors (no extra memory)."""
    from model.decode_step import _fuse

    model = tiny_model()
    ids, mask = ragged_batch()
    before = model.generate(ids, mask, max_new_tokens=12)
    block = model.decoder.blocks[0]
    q_values = block.self_attn.q.weight.detach().clone()
    fused = _fuse([block.self_attn.q, block.self_attn.k, block.self_attn.v], share=True)
    assert block.self_attn.q.weight.data_ptr() == fused.data_ptr()
    assert block.self_attn.k.weight.data_ptr() == fused[q_values.shape[0] :].data_ptr()
    assert torch.equal(block.self_attn.q.weight, q_values)
    assert model.generate(ids, mask, max_new_tokens=12).tolist() == before.tolist()


def test_cpu_threads_are_timed_per_call(model, reference):
    ids, mask = ragged_batch()
    decoder = GreedyDecoder(model, cpu_threads="auto")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            got = decoder.generate(model.encode(ids, mask), mask, 30)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(threads)
    assert got.tolist() == reference[0].tolist()
    assert decoder.stats.cpu_threads in (1, 2)
