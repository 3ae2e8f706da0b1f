"""The worker's Celery app: ``celery -A workers.celery_app worker -Q extract,maintenance`` (or ``leximind worker``).

Configuration lives in ``leximind.messaging.make_celery`` so web, workers and beat agree on it; this module
adds the tasks and the per-process start-up (load the model once per process, never at import).
"""

from __future__ import annotations

import logging
import os
import signal

from celery.signals import setup_logging, task_prerun, worker_init, worker_process_init, worker_shutting_down

from leximind.messaging import default_broker_url, make_celery, wake_infer
from leximind.queues import QUEUE_INFER, TASK_INFER

log = logging.getLogger(__name__)

app = make_celery(default_broker_url())
# main process -> pool processes: "stop after this batch" (billiard itself uses SIGUSR1 and SIGTERM)
STOP_SIGNAL = signal.SIGUSR2


@setup_logging.connect
def _setup_logging(loglevel: object = None, **_: object) -> None:
    """Workers and beat log like every LexiMind process: JSON lines, secrets redacted (leximind.logging_setup)."""
    from leximind.logging_setup import configure_logging

    configure_logging("worker", level=loglevel if isinstance(loglevel, str) else None)


@worker_init.connect
def _check_worker_settings(**_: object) -> None:
    """An inference worker whose pipeline settings cannot be used stops before it starts, naming the
    variable (a handler's exception would only be logged by Celery, and the first model load would then fail
    and be recorded against the version, which is not at fault)."""
    from workers.runtime import WorkerConfigError, consumes, pipeline_config

    if consumes(app, QUEUE_INFER):
        try:
            pipeline_config()
        except WorkerConfigError as exc:
            log.critical("the worker does not start: %s", exc)
            raise SystemExit(f"leximind worker: {exc}") from None


@worker_process_init.connect
def _init_worker_process(**_: object) -> None:
    from workers.runtime import consumes, init_process

    infer = consumes(app, QUEUE_INFER)
    if infer:
        from workers.inference import stop_requested

        # the main process's warm shutdown asks with STOP_SIGNAL (billiard leaves that one alone)
        signal.signal(STOP_SIGNAL, lambda *_: stop_requested.set())
    init_process(app, load_model=infer)
    if infer:
        # look at the queue once at start: documents may have been queued while no worker ran
        wake_infer(app)


def _install_stop_handlers() -> None:
    """In an inference pool process, SIGTERM (or STOP_SIGNAL) means: hand back the claim after this batch.

    Pool processes otherwise leave at once on SIGTERM (systemd and ``kill -TERM -<pgid>`` signal the whole
    group), leaving their claim to the lease expiry. billiard installs its own SIGTERM handler after
    ``worker_process_init``, so this runs when an inference task starts; a second SIGTERM is handed to the
    handler it replaced, which stops the process at once."""
    from workers.inference import stop_requested

    previous = signal.getsignal(signal.SIGTERM)
    if getattr(previous, "leximind_stop", False):
        return
    terms: list[int] = []  # SIGTERMs heard; the main process's STOP_SIGNAL does not count as one

    def request_stop(signum: int, frame: object) -> None:
        # only a second SIGTERM stops at once: with `kill -TERM -<pgid>` the main process's STOP_SIGNAL can
        # arrive before this process's own SIGTERM, which is still the first one
        if signum == signal.SIGTERM:
            if terms:
                if callable(previous):
                    previous(signum, frame)
                    return
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)
            terms.append(signum)
        stop_requested.set()

    request_stop.leximind_stop = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(STOP_SIGNAL, request_stop)


@task_prerun.connect
def _stoppable_inference(sender: object = None, **_: object) -> None:
    if getattr(sender, "name", None) == TASK_INFER:
        _install_stop_handlers()


@worker_shutting_down.connect
def _stop_inference_after_this_batch(**_: object) -> None:
    """Warm shutdown (``docker stop`` signals the main process only): pool processes running inference hand
    back what they claimed after their current batch, instead of draining the queue first."""
    from billiard.process import active_children

    from workers.runtime import consumes

    if not consumes(app, QUEUE_INFER):
        return
    for child in active_children():
        try:
            os.kill(child.pid, STOP_SIGNAL)
        except ProcessLookupError:
            pass


from workers import tasks  # noqa: E402,F401  (registers the tasks on ``app``)
