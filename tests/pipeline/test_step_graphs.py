"""The CUDA-graph bookkeeping on the CPU: model.step_graphs and the decoder's graph path, under a stand-in
backend whose "graphs" replay their bound step eagerly and which enforces the caching allocator's pool rule
(tests/pipeline/graph_backend.py). tests/pipeline/test_gpu_decode.py runs the same paths on a GPU."""

from __future__ import annotations

import pytest
import torch

from model.decode_step import ATTENTION_KINDS
from model.fast_decode import GreedyDecoder
from model.step_graphs import StepGraphs
from tests.pipeline.decoding_cases import ragged_batch, stop_steps, tiny_model
from tests.pipeline.graph_backend import EagerReplayBackend


@pytest.fixture(scope="module", params=["gated-untied", "relu-tied"])
def model(request):
    return tiny_model(gated=request.param == "gated-untied")


class _Counter:
    """A one-number state with snapshot/restore, whose step counts how often it really ran."""

    def __init__(self, fail_on_run: int = 0):
        self.value = torch.zeros(1)
        self.runs = 0
        self.fail_on_run = fail_on_run

    def step(self) -> None:
        self.runs += 1
        self.value.add_(1)
        if self.runs == self.fail_on_run:
            raise RuntimeError("kernel failed half way")

    def snapshot(self) -> torch.Tensor:
        return self.value.clone()

    def restore(self, saved: torch.Tensor) -> None:
        self.value.copy_(saved)


def test_capture_warms_up_undoes_the_warm_up_and_takes_a_fresh_pool():
    backend, counter = EagerReplayBackend(), _Counter()
    graphs = StepGraphs(backend, warmup_steps=3)
    first = graphs.capture(counter.step, counter.snapshot, counter.restore)
    assert counter.runs == 3 and counter.value.item() == 0  # three warm-up steps, each undone
    assert backend.events == ["warm_up", "capture"]
    first.replay()
    assert counter.value.item() == 1
    second = graphs.capture(counter.step, counter.snapshot, counter.restore)
    assert second.pool != first.pool
    assert first.step == counter.step  # the graph holds what it was captured on
    graphs.put("a", first)
    graphs.put("b", second)
    del first, second
    assert backend.live_graphs == 2  # stored graphs stay alive
    graphs.clear()
    assert len(graphs) == 0 and backend.live_graphs == 0


def test_least_recently_used_graphs_are_dropped_beyond_the_cap():
    backend, counter = EagerReplayBackend(), _Counter()
    graphs = StepGraphs(backend, warmup_steps=1, max_graphs=2)
    for key in "abc":
        if key == "c":
            assert graphs.get("a") is not None  # "a" used again: "b" is now the oldest
        graphs.put(key, graphs.capture(counter.step, counter.snapshot, counter.restore))
    assert graphs.get("b") is None and graphs.get("a") is not None and graphs.get("c") is not None
    assert graphs.evicted == 1 and len(graphs) == 2 and backend.live_graphs == 2  # its pool went with it


def test_a_failing_warm_up_leaves_the_state_as_it_was():
    backend, counter = EagerReplayBackend(), _Counter(fail_on_run=2)
    counter.value.fill_(5)
    with pytest.raises(RuntimeError, match="half way"):
        StepGraphs(backend, warmup_steps=3).capture(counter.step, counter.snapshot, counter.restore)
    assert counter.value.item() == 5
    assert "capture" not in backend.events


def test_the_stand_in_enforces_the_allocator_pool_rule():
    """What the H200 hit: naming a pool again after its last graph is gone. If the stand-in did not refuse
    this, the decoder tests below could not catch a return to a shared pool."""
    backend, counter = EagerReplayBackend(), _Counter()
    pool = backend.new_pool()
    graph = backend.capture(counter.step, pool)
    also = backend.capture(counter.step, pool)  # sharing a pool with a live graph is allowed
    del graph, also
    with pytest.raises(RuntimeError, match="use_count"):
        backend.capture(counter.step, pool)


def _reference_and_states(model, rows=13, width=40, seed=0, new_tokens=30):
    ids, mask = ragged_batch(rows, width, seed)
    with torch.no_grad():
        return model.generate(ids, mask, max_new_tokens=new_tokens), model.encode(ids, mask), mask


def test_graphed_decoder_equals_reference_and_drops_graphs_with_the_cache(model):
    """Exact (fp32) steps under graphs, across calls that grow the cache: a graph bound to a replaced cache
    would write into the old buffers and the tokens would differ."""
    backend = EagerReplayBackend()
    decoder = GreedyDecoder(model, use_cuda_graphs=True, graph_backend=backend, attention="sdpa")
    for rows, width, new_tokens, seed in [(13, 40, 30, 1), (3, 10, 12, 2), (20, 70, 40, 3), (5, 40, 30, 4)]:
        expected, states, mask = _reference_and_states(model, rows, width, seed, new_tokens)
        assert decoder.generate(states, mask, new_tokens).tolist() == expected.tolist()
    stats = decoder.stats
    assert stats.graph_steps == stats.steps and stats.eager_steps == 0 and not stats.graph_error
    assert stats.compactions > 0  # smaller graphs for the rows still decoding
    assert backend.live_graphs == len(decoder._graphs) < stats.graphs_captured  # dropped ones released
    assert backend.events.count("warm_up") == backend.events.count("capture") == stats.graphs_captured


def test_attention_timing_then_decoding_never_reuses_a_dead_pool(model):
    """The sequence that failed on the H200 at batches 1 and 32: capture a step with each attention kernel,
    time them, drop the slower, capture the decoding steps. Lean steps, as in bf16 on a GPU."""
    expected, states, mask = _reference_and_states(model)
    for rows in (1, 13):
        backend = EagerReplayBackend()
        decoder = GreedyDecoder(model, use_cuda_graphs=True, graph_backend=backend, lean=True)
        assert decoder.attention == "auto"
        got = decoder.generate(states[:rows], mask[:rows], 30)
        assert got.tolist() == expected[:rows, : got.shape[1]].tolist()
        stats = decoder.stats
        assert not stats.graph_error, stats.graph_error
        assert stats.attention in ATTENTION_KINDS and set(stats.attention_ms) == set(ATTENTION_KINDS)
        assert stats.eager_steps == 0 and stats.graph_steps == stats.steps > 0


def test_failed_capture_falls_back_to_eager_and_says_why(model):
    class FailsOnThirdCapture(EagerReplayBackend):
        def capture(self, run, pool):
            if self.events.count("capture") == 2:
                raise RuntimeError("operation not permitted when stream is capturing")
            return super().capture(run, pool)

    expected, states, mask = _reference_and_states(model)
    assert len(set(stop_steps(expected))) > 3
    backend = FailsOnThirdCapture()
    decoder = GreedyDecoder(model, use_cuda_graphs=True, graph_backend=backend, attention="sdpa")
    assert decoder.generate(states, mask, 30).tolist() == expected.tolist()
    stats = decoder.stats
    assert "stream is capturing" in stats.graph_error
    assert stats.graph_steps > 0 and stats.eager_steps > 0
    assert stats.graph_steps + stats.eager_steps == stats.steps
    assert not decoder.use_graphs and backend.live_graphs == 0
    # the next call decodes eagerly from the start, and still correctly
    steps_before = stats.steps
    assert decoder.generate(states, mask, 30).tolist() == expected.tolist()
    assert stats.eager_steps - (steps_before - stats.graph_steps) == stats.steps - steps_before


def test_graphs_need_cuda_or_a_backend(model):
    with pytest.raises(ValueError, match="CUDA device"):
        GreedyDecoder(model, use_cuda_graphs=True)
