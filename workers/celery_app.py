"""The worker's Celery app: ``celery -A workers.celery_app worker -Q extract,maintenance`` (or ``leximind worker``).

Configuration lives in ``leximind.messaging.make_celery`` so web, workers and beat agree on it; this module
adds the tasks and the per-process start-up (load the model once per process, never at import).
"""

from __future__ import annotations

import logging

from celery.signals import setup_logging, worker_process_init

from leximind.messaging import default_broker_url, make_celery, wake_infer
from leximind.queues import QUEUE_INFER

log = logging.getLogger(__name__)

app = make_celery(default_broker_url())


@setup_logging.connect
def _setup_logging(loglevel: object = None, **_: object) -> None:
    """Workers and beat log like every LexiMind process: JSON lines, secrets redacted (leximind.logging_setup)."""
    from leximind.logging_setup import configure_logging

    configure_logging("worker", level=loglevel if isinstance(loglevel, str) else None)


@worker_process_init.connect
def _init_worker_process(**_: object) -> None:
    from workers.runtime import consumes, init_process

    infer = consumes(app, QUEUE_INFER)
    init_process(app, load_model=infer)
    if infer:
        # look at the queue once at start: documents may have been queued while no worker ran
        wake_infer(app)


from workers import tasks  # noqa: E402,F401  (registers the tasks on ``app``)
