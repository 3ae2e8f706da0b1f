"""Training runs: queued -> running -> succeeded | failed | cancelled. Callers own the session and commit.

The training job moves a run along; the web app creates runs, lists them and asks for cancellation. A
running run records its step, loss and ETA in ``progress``, appends to ``history`` and beats its heartbeat,
so a person watching it (or the sweeper) can tell a live run from a dead one.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, literal, select, text, update
from sqlalchemy.orm import Session

from db.models import Document, Feedback, RunState, TrainingRun

FINISHED_STATES = (RunState.SUCCEEDED.value, RunState.FAILED.value, RunState.CANCELLED.value)
ACTIVE_STATES = (RunState.QUEUED.value, RunState.RUNNING.value)
HISTORY_LIMIT = 2000  # points kept in the history column; older points are thinned, never the newest


class RunError(ValueError):
    """A request about a training run that cannot be done; the message says why, for a person."""


def create_run(session: Session, params: dict[str, Any], created_by_id: int | None = None) -> TrainingRun:
    run = TrainingRun(params=dict(params), created_by_id=created_by_id, state=RunState.QUEUED.value,
                      progress={}, history=[], metrics={})
    session.add(run)
    session.flush()
    return run


TRAINING_LOCK = 7_301_003  # pg_advisory_xact_lock key (db.versions holds the others)


def create_run_unless_busy(session: Session, params: dict[str, Any],
                           created_by_id: int | None = None) -> TrainingRun | int:
    """A new queued run, or the id of the run still queued or running (one run at a time). The check and the
    insert hold a transaction-scoped advisory lock, so two requests at the same moment cannot both see no run
    and both create one; the lock is released when the caller's transaction ends."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": TRAINING_LOCK})
    busy = session.scalar(select(TrainingRun.id).where(TrainingRun.state.in_(ACTIVE_STATES))
                          .order_by(TrainingRun.id).limit(1))
    return busy if busy is not None else create_run(session, params, created_by_id)


def get_run(session: Session, run_id: int) -> TrainingRun | None:
    return session.get(TrainingRun, run_id)


def list_runs(session: Session, limit: int = 50) -> list[TrainingRun]:
    return list(session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit)))


def start_run(session: Session, run_id: int, worker: str) -> TrainingRun:
    """queued -> running, under a row lock. Refuses a run in any other state, or while another runs."""
    run = session.scalar(select(TrainingRun).where(TrainingRun.id == run_id).with_for_update())
    if run is None:
        raise RunError(f"training run {run_id} does not exist")
    if run.state != RunState.QUEUED.value:
        raise RunError(f"training run {run_id} is {run.state}, not queued; it cannot be started again")
    if run.cancel_requested:
        raise RunError(f"training run {run_id} was cancelled before it started")
    other = session.scalar(
        select(TrainingRun.id).where(TrainingRun.state == RunState.RUNNING.value, TrainingRun.id != run_id)
    )
    if other is not None:
        raise RunError(f"training run {other} is already running; one run at a time")
    run.state = RunState.RUNNING.value
    run.worker = worker
    run.started_at = func.now()
    run.heartbeat_at = func.now()
    run.progress = {"phase": "starting", "step": 0}
    session.flush()
    return run


def update_progress(
    session: Session, run_id: int, progress: dict[str, Any], new_history: list[dict[str, Any]] | None = None
) -> bool:
    """Record progress and beat the heartbeat; returns whether cancellation was requested."""
    run = session.get(TrainingRun, run_id, populate_existing=True)
    if run is None:
        raise RunError(f"training run {run_id} does not exist")
    if run.state in FINISHED_STATES:
        return True  # ended under it (the sweeper took it for dead): stop, as if cancelled
    run.progress = {**(run.progress or {}), **progress}
    if new_history:
        history = list(run.history or []) + list(new_history)
        if len(history) > HISTORY_LIMIT:
            keep_recent = HISTORY_LIMIT // 2
            old, recent = history[:-keep_recent], history[-keep_recent:]
            history = old[:: max(2, len(old) // keep_recent + 1)] + recent
        run.history = history
    run.heartbeat_at = func.now()
    session.flush()
    return bool(run.cancel_requested)


def cancel_requested(session: Session, run_id: int) -> bool:
    return bool(session.scalar(select(TrainingRun.cancel_requested).where(TrainingRun.id == run_id)))


def finish_run(
    session: Session,
    run_id: int,
    state: str,
    *,
    metrics: dict[str, Any] | None = None,
    error_message: str | None = None,
    model_version_id: int | None = None,
) -> TrainingRun:
    if state not in FINISHED_STATES:
        raise RunError(f"{state!r} is not a final state; use one of {FINISHED_STATES}")
    run = session.get(TrainingRun, run_id, populate_existing=True)
    if run is None:
        raise RunError(f"training run {run_id} does not exist")
    if run.state in FINISHED_STATES:
        return run  # already ended (the sweeper failed it when its heartbeat stopped): that verdict stands
    run.state = state
    if metrics is not None:
        run.metrics = metrics
    run.error_message = error_message
    if model_version_id is not None:
        run.model_version_id = model_version_id
    run.progress = {**(run.progress or {}), "phase": state, "eta_s": 0}
    run.finished_at = func.now()
    run.heartbeat_at = func.now()
    session.flush()
    return run


def request_cancel(session: Session, run_id: int) -> TrainingRun:
    """A queued run is cancelled at once; a running one stops at its next step and ends cancelled."""
    run = session.scalar(select(TrainingRun).where(TrainingRun.id == run_id).with_for_update())
    if run is None:
        raise RunError(f"training run {run_id} does not exist")
    if run.state in FINISHED_STATES:
        raise RunError(f"training run {run_id} already ended ({run.state}); there is nothing to cancel")
    run.cancel_requested = True
    if run.state == RunState.QUEUED.value:
        run.state = RunState.CANCELLED.value
        run.finished_at = func.now()
        run.error_message = "cancelled before it started"
    session.flush()
    return run


def fail_lost_runs(session: Session, stale_after_s: float) -> list[int]:
    """Running runs whose heartbeat is older than ``stale_after_s``: their worker died. Failed, with why."""
    lost = session.scalars(
        select(TrainingRun)
        .where(
            TrainingRun.state == RunState.RUNNING.value,
            func.coalesce(TrainingRun.heartbeat_at, TrainingRun.started_at)
            < func.now() - literal(timedelta(seconds=stale_after_s)),
        )
        .with_for_update(skip_locked=True)
    ).all()
    for run in lost:
        phase = (run.progress or {}).get("phase")
        run.state = RunState.FAILED.value
        run.error_message = (
            f"the worker running it ({run.worker or 'unknown'}) stopped answering: no heartbeat since "
            f"{run.heartbeat_at or run.started_at:%Y-%m-%d %H:%M:%S %Z}"
            + (f" (phase {phase})" if phase else "")
            + "; it was probably killed or ran out of memory. Start a new run to try again."
        )
        run.progress = {**(run.progress or {}), "phase": RunState.FAILED.value, "eta_s": 0}
        run.finished_at = func.now()
    session.flush()
    return [run.id for run in lost]


def heartbeat_run(session: Session, run_id: int) -> bool:
    """The live run's background beat; False once the run is no longer running."""
    beat = session.execute(
        update(TrainingRun)
        .where(TrainingRun.id == run_id, TrainingRun.state == RunState.RUNNING.value)
        .values(heartbeat_at=func.now())
    )
    return beat.rowcount > 0


def corrections(session: Session) -> list[dict[str, Any]]:
    """Every correction as a training row {"text", "topic", "emotions", "summary"}; the newest per
    document wins field by field (later rows override earlier ones when de-duplicated)."""
    rows = session.execute(
        select(Document.text, Feedback.topic_label, Feedback.emotion_labels, Feedback.summary)
        .join(Document, Document.id == Feedback.document_id)
        .where(Document.text.is_not(None))
        .order_by(Feedback.created_at, Feedback.id)
    )
    return [
        {"text": text, "topic": topic, "emotions": emotions, "summary": summary}
        for text, topic, emotions, summary in rows
        if text and text.strip()
    ]


def corrected_tasks(session: Session) -> set[str]:
    """The tasks ("topic", "emotion", "summary") that at least one correction gives a label for."""
    topic, emotion, summary = session.execute(
        select(func.count(Feedback.topic_label), func.count(Feedback.emotion_labels), func.count(Feedback.summary))
    ).one()
    return {task for task, count in (("topic", topic), ("emotion", emotion), ("summary", summary)) if count}
