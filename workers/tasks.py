"""Thin Celery tasks: parse ids, call a plain function, return a small JSON summary (for the logs).

Each task has a stable explicit name (``leximind.queues``); the web enqueues by that name only.
"""

from __future__ import annotations

import dataclasses
import logging

from leximind.messaging import clear_infer_pending, wake_infer
from leximind.queues import TASK_EXTRACT, TASK_INFER, TASK_RETENTION, TASK_SWEEP, TASK_TRAIN
from workers.celery_app import app

log = logging.getLogger(__name__)


@app.task(name=TASK_EXTRACT)
def extract_documents(document_ids: int | list[int]) -> dict[str, str]:
    """Args: one document id, or a list of them (``leximind.messaging.wake_extract`` batches large uploads)."""
    from workers.extract_step import extract_documents as extract
    from workers.runtime import get_runtime

    rt = get_runtime()
    ids = [int(document_ids)] if isinstance(document_ids, int) else [int(i) for i in document_ids]
    outcomes = extract(
        rt.database_url,
        ids,
        settings=rt.settings,
        tuning=rt.tuning,
        worker_name=rt.worker_name,
        on_queued=lambda: wake_infer(app),
    )
    return {str(i): outcome.value for i, outcome in outcomes.items()}


@app.task(name=TASK_INFER)
def infer_wakeup() -> dict:
    from workers.inference import process_queue, stop_requested
    from workers.model_resolution import ensure_model
    from workers.runtime import get_runtime

    rt = get_runtime()
    clear_infer_pending(app)  # from here on, a newly queued document sends a fresh wake-up
    if ensure_model(rt.database_url, rt.settings, app, rt.tuning) is None:
        return {"no_model": True}
    report = process_queue(
        rt.database_url,
        rt.predictors,
        settings=rt.settings,
        tuning=rt.tuning,
        worker_name=rt.worker_name,
        max_seconds=rt.tuning.infer_task_seconds,
        on_full_claim=lambda: wake_infer(app),
    )
    if report.stopped and not stop_requested.is_set():
        wake_infer(app, force=True)  # out of time: the rest of the queue goes on with the next message
    elif report.released:
        wake_infer(app)  # this process is stopping: a peer takes what it handed back (no re-wake loop)
    return dataclasses.asdict(report)


@app.task(name=TASK_SWEEP)
def sweep() -> dict:
    from workers.runtime import get_runtime
    from workers.sweeper import sweep as run_sweep

    rt = get_runtime()
    counts = run_sweep(rt.database_url, app, settings=rt.settings, tuning=rt.tuning)
    return dataclasses.asdict(counts) | {"extract_wakeups": len(counts.extract_wakeups)}


@app.task(name=TASK_RETENTION)
def retention() -> dict:
    from db.retention import purge
    from workers.runtime import get_runtime

    return dataclasses.asdict(purge(get_runtime().database_url))


@app.task(name=TASK_TRAIN)
def run_training(run_id: int) -> None:
    from workers.runtime import get_runtime
    from workers.training_job import run_training_run

    rt = get_runtime()
    # synchronous commits: unlike a claim, a registered version is not cheap to redo
    run_training_run(rt.settings.database_url, int(run_id), rt.settings)
    # a new version may be active now: documents waiting for a model can go
    wake_infer(app, force=True)
