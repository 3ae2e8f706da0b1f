"""Model versions: register, activate, roll back, and what the web says while no model exists yet.

At most one version is active (a partial unique index enforces it). Activation takes a transaction-level
advisory lock so two admins (or a training run and an admin) cannot interleave their two UPDATEs.
Callers own the session and commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text, update
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


def activate_version(session: Session, version_id: int) -> ModelVersion:
    """Make one version the active one. Workers pick it up between batches."""
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
    version.activated_at = func.now()
    session.flush()
    session.refresh(version)
    return version


def active_version(session: Session) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.is_active.is_(True)))


def active_version_id(session: Session) -> int | None:
    """The cheap check the inference loop makes between batches."""
    return session.scalar(select(ModelVersion.id).where(ModelVersion.is_active.is_(True)))


def list_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))


def rollback(session: Session) -> ModelVersion:
    """Re-activate the version that was active before the current one."""
    current = active_version(session)
    query = select(ModelVersion).where(ModelVersion.activated_at.is_not(None))
    if current is not None:
        query = query.where(ModelVersion.id != current.id, ModelVersion.activated_at <= current.activated_at)
    previous = session.scalar(
        query.order_by(ModelVersion.activated_at.desc(), ModelVersion.id.desc()).limit(1)
    )
    if previous is None:
        raise VersionError("there is no previously active version to roll back to")
    return activate_version(session, previous.id)


# ------------------------------------------------------------------------------- while no model exists
def starter_run(session: Session) -> TrainingRun | None:
    """The most recent starter training run (the one started because no model existed)."""
    return session.scalar(
        select(TrainingRun)
        .where(TrainingRun.params["recipe"].astext == STARTER_RECIPE)
        .order_by(TrainingRun.id.desc())
        .limit(1)
    )


@dataclass
class ModelStatus:
    """What the web app shows about the model: ``state`` is ready | training | failed | waiting."""

    state: str
    message: str
    version: str | None = None
    run_id: int | None = None
    progress_pct: float | None = None
    waiting_documents: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "message": self.message,
            "version": self.version,
            "training_run_id": self.run_id,
            "progress_pct": self.progress_pct,
            "waiting_documents": self.waiting_documents,
        }


def model_status(session: Session) -> ModelStatus:
    """ "Ready (v3)", or "no model yet: starter training at 42%", in words a person can act on."""
    version = active_version(session)
    if version is not None:
        return ModelStatus("ready", f"Model {version.name} is active.", version=version.name)
    waiting = (
        session.scalar(
            select(func.count()).select_from(Document).where(Document.state == DocState.QUEUED.value)
        )
        or 0
    )
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
        return ModelStatus(
            "training",
            f"No model yet: starter training run {run.id} is {run.state}{at}. "
            f"{waiting} document(s) wait in the queue and will be processed when it finishes.",
            run_id=run.id,
            progress_pct=pct,
            waiting_documents=waiting,
        )
    return ModelStatus(
        "failed",
        f"No model yet: starter training run {run.id} ended {run.state}"
        + (f" ({run.error_message})" if run.error_message else "")
        + ". An admin can start a new training run or set LEXIMIND_BASE_MODEL to a checkpoint folder.",
        run_id=run.id,
        waiting_documents=waiting,
    )


def _progress_pct(progress: dict[str, Any]) -> float | None:
    step, total = progress.get("step"), progress.get("total_steps")
    if isinstance(step, int | float) and isinstance(total, int | float) and total > 0:
        return round(100.0 * min(step, total) / total, 1)
    return None
