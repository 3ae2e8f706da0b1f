"""CUDA graphs of the decoding step: captured once per shape, replayed at every step of that shape.

The rules this module keeps, and why (the first H200 run, docs/performance.md, lost its graphs at batches
1 and 32 to the caching allocator's assert ``it->second->use_count > 0``):

- **A private memory pool per graph.** Every capture gets a fresh ``torch.cuda.graph_pool_handle()`` and
  no handle is ever named by a second capture. The allocator counts the graphs that use a pool; when the
  last one is destroyed while blocks allocated during its capture are still alive, the pool stays
  registered with a count of 0, and a later capture that names it fails that assert. The decoder did just
  that: it captured a step with each attention kernel to time them, deleted those graphs, and captured the
  next step into the same pool. Whether the assert fires depends on whether something allocated during the
  capture outlived it (a library's lazily created workspace, say), which is why it struck some batch sizes
  and not others (the likely cause, from the allocator's code; not yet confirmed on a GPU). A pool per
  graph costs each graph its own intermediates, one step's activations and logits: by arithmetic about
  20 MB at 256 rows of FLAN-T5-base (the bf16 logits are 16 MB), far less at small batches; so at most
  ``max_graphs`` are kept.
- **Warm-up on the capture stream, before the capture** (the PyTorch CUDA-graphs recipe: warm up on a
  side stream). The warm-up runs on the same side stream the graph is then captured on, so per-stream
  lazy set-up (cuBLAS/cuBLASLt handles and workspaces) happens outside the capture and is not allocated
  into the graph's pool. Each warm-up step is undone (``snapshot``/``restore``), so the captured step
  starts from the real decoding state; a capture itself runs nothing.
- **Static inputs and outputs outlive the graph.** A ``CapturedStep`` holds the bound step, and through it
  every tensor the graph reads or writes (the cache buffers, the bias table, the fused weights): none can be
  freed, and its memory handed to something else, while the graph can still replay. The decoder drops its
  graphs before it replaces the cache they were captured on.
- A failed capture raises to the caller, which decodes eagerly from then on and says why
  (``DecodeStats.graph_error``, ``eager_steps``).

``StepGraphs`` holds the bookkeeping and talks to CUDA only through a backend (``CudaGraphBackend``), so
the bookkeeping runs on a CPU under a stand-in backend in the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

Step = Callable[[], None]


class GraphBackend(Protocol):
    def new_pool(self) -> Any:
        """A memory pool no capture has used."""
        ...

    def warm_up(self, run: Step) -> None:
        """Run `run` eagerly on the stream captures use, ordered after the work already queued."""
        ...

    def capture(self, run: Step, pool: Any) -> Any:
        """Capture `run` on that stream into a graph whose allocations come from `pool`; the graph has
        replay()."""
        ...

    def time_ms(self, run: Step, repeats: int) -> float:
        """Milliseconds per call of `run`, measured on the device."""
        ...


class CudaGraphBackend:
    """torch.cuda: one side stream per backend, shared by warm-ups and captures."""

    def __init__(self) -> None:
        self._stream: torch.cuda.Stream | None = None

    @property
    def stream(self) -> torch.cuda.Stream:
        if self._stream is None:
            self._stream = torch.cuda.Stream()
        return self._stream

    def new_pool(self) -> Any:
        return torch.cuda.graph_pool_handle()

    def warm_up(self, run: Step) -> None:
        current = torch.cuda.current_stream()
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            run()
        current.wait_stream(self.stream)

    def capture(self, run: Step, pool: Any) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool, stream=self.stream):
            run()
        return graph

    def time_ms(self, run: Step, repeats: int) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        run()
        start.record()
        for _ in range(repeats):
            run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / repeats


@dataclass(frozen=True)
class CapturedStep:
    graph: Any
    pool: Any  # this graph's own memory pool; named by no other capture
    step: Step  # the bound step: keeps every tensor the graph reads or writes alive as long as the graph

    def replay(self) -> None:
        self.graph.replay()


class StepGraphs:
    """Captured steps by shape key; each capture warmed up first and given its own pool.

    At most `max_graphs` are kept, the least recently replayed dropped first: a long-running worker meets
    many shapes (batch ladder x key blocks x encoder blocks), and every graph holds its own pool. With a
    pool per graph, dropping one is always safe (no other capture names its pool)."""

    def __init__(self, backend: GraphBackend | None = None, warmup_steps: int = 3, max_graphs: int = 64):
        self.backend = backend if backend is not None else CudaGraphBackend()
        self.warmup_steps = warmup_steps
        self.max_graphs = max_graphs
        self.evicted = 0
        self._graphs: dict[Hashable, CapturedStep] = {}  # least recently used first

    def __len__(self) -> int:
        return len(self._graphs)

    def get(self, key: Hashable) -> CapturedStep | None:
        captured = self._graphs.pop(key, None)
        if captured is not None:
            self._graphs[key] = captured  # now the most recently used
        return captured

    def put(self, key: Hashable, captured: CapturedStep) -> None:
        self._graphs.pop(key, None)
        self._graphs[key] = captured
        while len(self._graphs) > self.max_graphs:
            del self._graphs[next(iter(self._graphs))]
            self.evicted += 1

    def clear(self) -> None:
        """Drop every graph (and with it its pool); call before the tensors they were captured on change."""
        self._graphs.clear()

    def capture(
        self, step: Step, snapshot: Callable[[], Any], restore: Callable[[Any], None]
    ) -> CapturedStep:
        """Warm `step` up (each run undone by restore(snapshot())), then capture it into a fresh pool.
        Not stored: put() it under its key, or drop it (timing)."""
        saved = snapshot()

        def warm_up() -> None:
            for _ in range(self.warmup_steps):
                try:
                    step()
                finally:
                    restore(saved)

        self.backend.warm_up(warm_up)
        pool = self.backend.new_pool()
        return CapturedStep(self.backend.capture(step, pool), pool, step)
