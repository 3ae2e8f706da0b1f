"""Model versions: register, activate, roll back, and what the web says while no model exists yet.

At most one version is active (a partial unique index enforces it). Activation takes a transaction-level
advisory lock so two admins (or a training run and an admin) cannot interleave their two UPDATEs.

A version whose artifact a worker cannot load keeps its ``load_error``: the workers then serve the
previous good version (the most recently activated one that never failed to load), try the active one
again after a while, and ``model_status`` says so. Callers own the session and commit.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, literal, select, text, update
from sqlalchemy.orm import Session

from db.models import DocState, Document, ModelVersion, RunState, TrainingRun

# pg_advisory_xact_lock keys; any constant unique within the application
ACTIVATION_LOCK = 7_301_001
RESOLUTION_LOCK = 7_301_002

STARTER_RECIPE = "starter"


class VersionError(ValueError):
    """An activation or rollback that cannot be done, with a message a person can act on."""


def register_version(
    session: Session,
    *,
    path: str,
    source: str,
    name: str | None = None,
    parent_id: int | None = None,
    training_run_id: int | None = None,
    metrics: dict[str, Any] | None = None,
    manifest_sha256: str | None = None,
    activate: bool = False,
) -> ModelVersion:
    """Add a version row for an artifact folder (``source``: base | starter | trained | import)."""
    version = ModelVersion(
        name=name or next_version_name(session),
        path=str(path),
        source=source,
        parent_id=parent_id,
        training_run_id=training_run_id,
        metrics=metrics or {},
        manifest_sha256=manifest_sha256,
        is_active=False,
    )
    session.add(version)
    session.flush()
    if activate:
        activate_version(session, version.id)
    return version


def next_version_name(session: Session) -> str:
    """``v<N+1>`` where N is the number of versions ever registered (names are never reused)."""
    count = session.scalar(select(func.count()).select_from(ModelVersion)) or 0
    name = f"v{count + 1}"
    while session.scalar(select(ModelVersion.id).where(ModelVersion.name == name)) is not None:
        count += 1
        name = f"v{count + 1}"
    return name


def activate_version(session: Session, version_id: int, *, restore: bool = False) -> ModelVersion:
    """Make one version the active one. Workers pick it up between batches. ``restore`` (a rollback) keeps
    the version's own activation time, so the order of activations stays the order of history."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ACTIVATION_LOCK})
    version = session.get(ModelVersion, version_id, populate_existing=True)
    if version is None:
        raise VersionError(f"model version {version_id} does not exist")
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.is_active.is_(True), ModelVersion.id != version_id)
        .values(is_active=False)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    version.is_active = True
    if not restore or version.activated_at is None:
        version.activated_at = func.now()
    version.load_error = None  # activating again says "try it": the workers load it at once
    version.load_failed_at = None
    session.flush()
    session.refresh(version)
    return version


def active_version(session: Session) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.is_active.is_(True)))


def active_version_id(session: Session) -> int | None:
    """The cheap check the inference loop makes between batches."""
    return session.scalar(select(ModelVersion.id).where(ModelVersion.is_active.is_(True)))


def serving_version(
    session: Session, retry_after_s: float, exclude: Collection[int] = ()
) -> ModelVersion | None:
    """The version the workers should run: the active one, unless it failed to load less than
    ``retry_after_s`` ago (or is in ``exclude``); then the previous good version; None without either."""
    active = active_version(session)
    if active is None:
        return None
    recently_failed = active.load_failed_at is not None and session.scalar(
        select(active.load_failed_at > func.now() - literal(timedelta(seconds=retry_after_s)))
    )
    if active.id not in exclude and not recently_failed:
        return active
    return _previous_good(session, active, exclude)


def serving_version_id(session: Session, retry_after_s: float) -> int | None:
    """The check the inference loop makes between batches."""
    version = serving_version(session, retry_after_s)
    return version.id if version is not None else None


def _previous_good(
    session: Session, active: ModelVersion, exclude: Collection[int] = ()
) -> ModelVersion | None:
    """The most recently activated version other than ``active`` that never failed to load."""
    return session.scalar(
        select(ModelVersion)
        .where(
            ModelVersion.id.not_in([active.id, *exclude]),
            ModelVersion.activated_at.is_not(None),
            ModelVersion.load_error.is_(None),
        )
        .order_by(ModelVersion.activated_at.desc(), ModelVersion.id.desc())
        .limit(1)
    )


def record_load_failure(session: Session, version_id: int, error: str) -> None:
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.id == version_id)
        .values(load_error=error[:2000], load_failed_at=func.now())
        .execution_options(synchronize_session=False)
    )


def clear_load_failure(session: Session, version_id: int) -> None:
    """A worker loaded the version after all (the files came back)."""
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.id == version_id, ModelVersion.load_error.is_not(None))
        .values(load_error=None, load_failed_at=None)
        .execution_options(synchronize_session=False)
    )


def list_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))


def rollback_target(session: Session, current: ModelVersion | None) -> ModelVersion | None:
    """The version a rollback from ``current`` (the active one) re-activates: the latest activated before it."""
    query = select(ModelVersion).where(ModelVersion.activated_at.is_not(None))
    if current is not None:
        query = query.where(ModelVersion.id != current.id, ModelVersion.activated_at <= current.activated_at)
    return session.scalar(query.order_by(ModelVersion.activated_at.desc(), ModelVersion.id.desc()).limit(1))


def rollback(session: Session) -> ModelVersion:
    """Undo the latest activation: re-activate the version that was active before the current one, and
    take the current one's activation back (its ``activated_at`` cleared), so a second rollback steps further
    back (v3 -> v2 -> v1) instead of toggling between the last two."""
    current = active_version(session)
    previous = rollback_target(session, current)
    if previous is None:
        raise VersionError("there is no previously active version to roll back to")
    restored = activate_version(session, previous.id, restore=True)
    if current is not None:
        session.execute(update(ModelVersion).where(ModelVersion.id == current.id).values(activated_at=None)
                        .execution_options(synchronize_session=False))
    return restored


# ------------------------------------------------------------------------------- while no model exists
def starter_run(session: Session) -> TrainingRun | None:
    """The most recent starter training run (the one started because no model existed)."""
    return session.scalar(
        select(TrainingRun)
        .where(TrainingRun.params["recipe"].astext == STARTER_RECIPE)
        .order_by(TrainingRun.id.desc())
        .limit(1)
    )


def starter_tries(session: Session) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(TrainingRun)
            .where(TrainingRun.params["recipe"].astext == STARTER_RECIPE)
        )
        or 0
    )


def starter_params(reason: str, *, tries: int, max_tries: int, retry_after_s: float) -> dict[str, Any]:
    """A starter run's params; they carry the restart policy so the web can say what happens next."""
    return {
        "recipe": STARTER_RECIPE,
        "reason": reason,
        "try": tries,
        "max_tries": max_tries,
        "retry_after_s": retry_after_s,  # the wait before the next try, should this one fail
    }


def starter_restart_due(session: Session, run: TrainingRun) -> bool | None:
    """For a failed starter run: True once its restart is due, False while waiting, None if none is left.

    Cancelled runs are never restarted (a person decided); nor is anything once ``max_tries`` runs exist.
    """
    if run.state != RunState.FAILED.value:
        return None
    params = run.params or {}
    if starter_tries(session) >= int(params.get("max_tries", 1)):
        return None
    wait = literal(timedelta(seconds=float(params.get("retry_after_s", 0.0))))
    return bool(session.scalar(select(func.coalesce(run.finished_at, func.now()) + wait <= func.now())))


@dataclass
class ModelStatus:
    """What the web app shows about the model: ``state`` is ready | degraded | training | failed | waiting.

    ``degraded``: the active version does not load and the previous good one (``serving``) serves meanwhile.
    """

    state: str
    message: str
    version: str | None = None
    run_id: int | None = None
    progress_pct: float | None = None
    waiting_documents: int = 0
    serving: str | None = None
    load_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "message": self.message,
            "version": self.version,
            "serving_version": self.serving,
            "load_error": self.load_error,
            "training_run_id": self.run_id,
            "progress_pct": self.progress_pct,
            "waiting_documents": self.waiting_documents,
        }


# a version's headline numbers, in the order pages show them (the full report is the artifact's metrics.json)
HEADLINE_METRICS = ("held_out_score", "topic_accuracy", "topic_macro_f1", "topic_ece", "emotion_micro_f1",
                    "emotion_macro_f1", "rouge1", "rougeL")


def headline_metrics(metrics: dict[str, Any] | None) -> dict[str, float | None]:
    """The headline numbers of a training run's full report (``{"test": {...}, "held_out_score": ...}``), or
    of a version row's metrics (already headline numbers): one shape, so runs and versions compare."""
    metrics = metrics or {}
    test = metrics.get("test")
    if not isinstance(test, dict):
        return {name: metrics.get(name) for name in HEADLINE_METRICS}
    topic, emotion, summary = (test.get(task) or {} for task in ("topic", "emotion", "summary"))
    return {
        "held_out_score": metrics.get("held_out_score"),
        "topic_accuracy": topic.get("accuracy"),
        "topic_macro_f1": topic.get("macro_f1"),
        "topic_ece": ((topic.get("calibration") or {}).get("after") or {}).get("ece"),
        "emotion_micro_f1": emotion.get("micro_f1"),
        "emotion_macro_f1": emotion.get("macro_f1"),
        "rouge1": summary.get("rouge1"),
        "rougeL": summary.get("rougeL"),
    }


def model_status(session: Session, owner_id: int | None = None) -> ModelStatus:
    """ "Ready (v3)", or "no model yet: starter training at 42%", in words a person can act on.

    ``owner_id``: count (and say) only that person's waiting documents, not everyone's (what other people
    upload is not theirs to see); None: all of them (admins, operators)."""
    version = active_version(session)
    if version is not None and version.load_error is None:
        return ModelStatus("ready", f"Model {version.name} is active.", version=version.name, serving=version.name)
    count = select(func.count()).select_from(Document).where(Document.state == DocState.QUEUED.value)
    if owner_id is not None:
        count = count.where(Document.owner_id == owner_id)
    waiting = session.scalar(count) or 0
    queue = _WaitingWords(waiting, owner_id is not None)
    if version is not None:
        return _unloadable(session, version, queue)
    run = starter_run(session)
    if run is None:
        return ModelStatus(
            "waiting",
            "No model yet. A worker sets one up (imports the base model or starts a starter training run) "
            "as soon as it starts; documents wait in the queue until then.",
            waiting_documents=waiting,
        )
    if run.state in (RunState.QUEUED.value, RunState.RUNNING.value):
        pct = _progress_pct(run.progress or {})
        at = f" at {pct:.0f}%" if pct is not None else ""
        tries = (run.params or {}).get("try", 1)
        of = f" (try {tries} of {run.params['max_tries']})" if tries > 1 and "max_tries" in run.params else ""
        return ModelStatus(
            "training",
            f"No model yet: starter training run {run.id}{of} is {run.state}{at}. "
            f"{queue} in the queue and will be processed when it finishes.",
            run_id=run.id,
            progress_pct=pct,
            waiting_documents=waiting,
        )
    ended = f"No model yet: starter training run {run.id} ended {run.state}" + (
        f" ({run.error_message})" if run.error_message else ""
    )
    restart = starter_restart_due(session, run)
    if restart is not None:
        params = run.params or {}
        then = "now" if restart else f"within {_duration(float(params.get('retry_after_s', 0)))} of its end"
        return ModelStatus(
            "waiting",
            f"{ended}. The workers start it again {then} (try {starter_tries(session) + 1} of "
            f"{params.get('max_tries')}); {queue} in the queue.",
            run_id=run.id,
            waiting_documents=waiting,
        )
    return ModelStatus(
        "failed",
        ended
        + (f", after {starter_tries(session)} tries" if run.state == RunState.FAILED.value else "")
        + ". An admin can start a new training run or set LEXIMIND_BASE_MODEL to a checkpoint folder.",
        run_id=run.id,
        waiting_documents=waiting,
    )


def _unloadable(session: Session, version: ModelVersion, queue: _WaitingWords) -> ModelStatus:
    fallback = _previous_good(session, version)
    problem = f"Model {version.name} is active but the workers cannot load it ({version.load_error})"
    if fallback is not None:
        return ModelStatus(
            "degraded",
            f"{problem}. Documents are processed with {fallback.name}, the previous good version, meanwhile; "
            f"the workers try {version.name} again every few minutes. An admin can roll back or activate "
            "another version (activating one makes the workers load it at once).",
            version=version.name,
            serving=fallback.name,
            load_error=version.load_error,
            waiting_documents=queue.count,
        )
    return ModelStatus(
        "failed",
        f"{problem}, and no earlier version can stand in. {queue} in the queue; nothing "
        "is lost. The workers try again every few minutes; an admin can fix the files or activate another "
        "version.",
        version=version.name,
        load_error=version.load_error,
        waiting_documents=queue.count,
    )


@dataclass(frozen=True)
class _WaitingWords:
    count: int
    own: bool  # only the reader's documents were counted

    def __str__(self) -> str:
        """'1 of your documents waits', '3 documents wait': the count with its verb."""
        noun = "documents" if self.own or self.count != 1 else "document"
        return f"{self.count} {'of your ' if self.own else ''}{noun} {'waits' if self.count == 1 else 'wait'}"


def _duration(seconds_: float) -> str:
    return f"{seconds_ / 60:.0f} min" if seconds_ >= 120 else f"{seconds_:.0f} s"


def _progress_pct(progress: dict[str, Any]) -> float | None:
    step, total = progress.get("step"), progress.get("total_steps")
    if isinstance(step, int | float) and isinstance(total, int | float) and total > 0:
        return round(100.0 * min(step, total) / total, 1)
    return None
