"""Job-system knobs that are not in ``leximind.config.Settings`` (all read from the environment)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from leximind.config import _env_float, _env_int


@dataclass
class JobTuning:
    # documents per model call inside one claim (the pipeline buckets by length again within it)
    infer_batch_docs: int = field(default_factory=lambda: _env_int("LEXIMIND_INFER_BATCH", 64))
    # a rough token budget per model call: characters / 4 summed over the batch
    infer_batch_tokens: int = field(default_factory=lambda: _env_int("LEXIMIND_INFER_BATCH_TOKENS", 64 * 512))
    # one infer task drains the queue for at most this long, then hands over to a fresh wake-up, so a
    # warm shutdown (which waits for the running task) takes one batch, not the whole backlog
    infer_task_seconds: float = field(default_factory=lambda: _env_float("LEXIMIND_INFER_TASK_SECONDS", 30.0))
    # retry backoff after a transient failure: base * 2**(attempt-1), capped, with 10% jitter
    retry_base_s: float = field(default_factory=lambda: _env_float("LEXIMIND_RETRY_BASE_SECONDS", 5.0))
    retry_max_s: float = field(default_factory=lambda: _env_float("LEXIMIND_RETRY_MAX_SECONDS", 300.0))
    # beat runs the sweeper this often
    sweep_interval_s: float = field(default_factory=lambda: _env_float("LEXIMIND_SWEEP_INTERVAL", 10.0))
    # a document whose last wake-up is older than this (and is still waiting) gets another one
    wakeup_stale_s: float = field(default_factory=lambda: _env_float("LEXIMIND_WAKEUP_STALE_SECONDS", 60.0))
    # most wake-ups one sweep sends (the rest follow on the next sweep)
    sweep_limit: int = field(default_factory=lambda: _env_int("LEXIMIND_SWEEP_LIMIT", 5000))

    def backoff(self, attempt: int) -> float:
        delay = min(self.retry_max_s, self.retry_base_s * 2 ** max(attempt - 1, 0))
        return delay * random.uniform(1.0, 1.1)
