"""The sweeper (beat runs it every LEXIMIND_SWEEP_INTERVAL seconds): nothing waits forever, nothing is lost.

- expired leases: ``processing`` -> ``queued`` and ``extracting`` -> ``uploaded`` (or ``failed`` once the
  document has used up its attempts: a document that kills its worker every time must stop doing so;
  only runs that started count, so documents waiting behind it in the dead worker's claim are not charged);
- lost wake-ups: due ``uploaded`` / ``queued`` documents whose last wake-up is older than
  LEXIMIND_WAKEUP_STALE_SECONDS get a new one. Redis only carries wake-ups, so after a restart or a
  FLUSHALL this is how every waiting document is found again;
- dead training runs: a ``running`` run whose heartbeat is older than LEXIMIND_TRAINING_STALE_SECONDS
  is failed with that reason (its worker died; the run cannot be resumed by another worker mid-step);
- a failed starter training run is started again once its backoff passed (``restart_starter_if_due``).
"""

from __future__ import annotations

import logging
import math

from celery import Celery

from db.session import session_scope
from db.sweeps import SweepCounts, requeue_expired_leases, stale_wakeups
from db.training_runs import fail_lost_runs
from leximind.config import JobTuning, Settings
from leximind.messaging import wake_extract, wake_infer
from workers.model_resolution import restart_starter_if_due

log = logging.getLogger(__name__)

MAX_INFER_WAKEUPS = 8  # enough to wake every GPU worker of a large deployment


def sweep(database_url: str, celery: Celery, *, settings: Settings, tuning: JobTuning) -> SweepCounts:
    counts = SweepCounts()
    with session_scope(database_url) as session:
        requeue_expired_leases(session, settings.max_attempts, counts)
    with session_scope(database_url) as session:
        stale_wakeups(session, tuning.wakeup_stale_s, tuning.sweep_limit, counts)
    with session_scope(database_url) as session:
        counts.training_runs_lost = fail_lost_runs(session, tuning.training_stale_s)
    counts.starter_restarted = restart_starter_if_due(database_url, celery, tuning)
    if counts.extract_wakeups:
        wake_extract(celery, counts.extract_wakeups)
    if counts.infer_due:
        for _ in range(min(MAX_INFER_WAKEUPS, math.ceil(counts.infer_due / settings.claim_batch_size))):
            wake_infer(celery, force=True)
    if counts.requeued_processing or counts.requeued_extracting or counts.failed_lost:
        log.warning(
            "sweep: %d processing and %d extracting documents re-queued after their lease expired, "
            "%d failed after too many attempts",
            counts.requeued_processing,
            counts.requeued_extracting,
            counts.failed_lost,
        )
    if counts.extract_wakeups or counts.infer_due:
        log.info(
            "sweep: re-sent %d extract wake-ups; %d queued documents were waiting for a wake-up",
            len(counts.extract_wakeups),
            counts.infer_due,
        )
    if counts.training_runs_lost:
        log.warning("sweep: training runs %s failed: their heartbeat stopped", counts.training_runs_lost)
    if counts.starter_restarted is not None:
        log.warning(
            "sweep: the failed starter training run was started again as run %d", counts.starter_restarted
        )
    return counts
