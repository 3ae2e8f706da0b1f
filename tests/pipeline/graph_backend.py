"""A CPU stand-in for CUDA graphs, for the tests of the graph bookkeeping (model.step_graphs) and of the
decoder's graph path (model.fast_decode) on machines without a GPU."""

from __future__ import annotations

import time

from model.step_graphs import Step


class EagerReplayBackend:
    """A CPU stand-in for CUDA graphs: a "graph" replays its step eagerly. It keeps the caching allocator's
    pool rule: a capture may name a pool only while a graph captured into it is alive, or a new one."""

    def __init__(self) -> None:
        self.events: list[str] = []  # "warm_up", "capture", "replay", in order
        self._pools = 0
        self._live: dict[int, int] = {}  # pool -> graphs alive in it

    def new_pool(self) -> int:
        self._pools += 1
        return self._pools

    def warm_up(self, run: Step) -> None:
        self.events.append("warm_up")
        run()

    def capture(self, run: Step, pool: int) -> _ReplayGraph:
        if self._live.get(pool, -1) == 0:
            raise RuntimeError(f"pool {pool} named after its last graph was destroyed (use_count > 0)")
        self.events.append("capture")
        self._live[pool] = self._live.get(pool, 0) + 1
        return _ReplayGraph(run, self, pool)

    def time_ms(self, run: Step, repeats: int) -> float:
        started = time.perf_counter()
        for _ in range(repeats):
            run()
        return 1000 * (time.perf_counter() - started) / repeats

    @property
    def live_graphs(self) -> int:
        return sum(self._live.values())

    def _destroyed(self, pool: int) -> None:
        self._live[pool] -= 1


class _ReplayGraph:
    def __init__(self, run: Step, backend: EagerReplayBackend, pool: int):
        self._run, self._backend, self._pool = run, backend, pool

    def replay(self) -> None:
        self._backend.events.append("replay")
        self._run()

    def __del__(self) -> None:
        self._backend._destroyed(self._pool)
