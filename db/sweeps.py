"""What the sweeper asks of the database: expired leases back a state, lost wake-ups found again.

Callers own the session and commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import case, func, null, or_, update
from sqlalchemy.orm import Session

from db.leases import UNCHANGED, pick_due, seconds
from db.models import DocState, Document


@dataclass
class SweepCounts:
    requeued_processing: int = 0
    requeued_extracting: int = 0
    failed_lost: int = 0
    extract_wakeups: list[int] = field(default_factory=list)
    infer_due: int = 0
    training_runs_lost: list[int] = field(default_factory=list)
    starter_restarted: int | None = None  # the id of a starter run started again


def requeue_expired_leases(session: Session, max_attempts: int, counts: SweepCounts) -> None:
    """Leases that expired (the worker died or hung) go back a state, or fail when out of attempts.

    Only runs that started count as attempts (``db.leases.start_attempts``), so a document that was
    merely claimed behind the one a worker died on goes back without being charged.
    """
    for held, back, code in (
        (DocState.PROCESSING, DocState.QUEUED, "worker_lost"),
        (DocState.EXTRACTING, DocState.UPLOADED, "extraction_worker_lost"),
    ):
        expired = (Document.state == held.value) & (Document.lease_expires_at < func.now())
        exhausted = Document.attempts >= max_attempts
        rows = (
            session.execute(
                update(Document)
                .where(expired)
                .values(
                    state=case((exhausted, DocState.FAILED.value), else_=back.value),
                    error_code=case((exhausted, code), else_=null()),
                    error_message=case(
                        (
                            exhausted,
                            f"The worker handling this document stopped {max_attempts} times "
                            "(crashed, killed or out of memory) while working on it; giving up. "
                            "Upload it again to retry, or report the file if it keeps happening.",
                        ),
                        else_=null(),
                    ),
                    finished_at=case((exhausted, func.now()), else_=null()),
                    lease_owner=None,
                    lease_expires_at=None,
                    wakeup_sent_at=None,
                    updated_at=func.now(),
                )
                .returning(Document.state)
                .execution_options(**UNCHANGED)
            )
            .scalars()
            .all()
        )
        requeued = sum(1 for s in rows if s == back.value)
        counts.failed_lost += len(rows) - requeued
        if held is DocState.PROCESSING:
            counts.requeued_processing += requeued
        else:
            counts.requeued_extracting += requeued


def stale_wakeups(session: Session, stale_after_s: float, limit: int, counts: SweepCounts) -> None:
    """Due documents whose last wake-up is older than ``stale_after_s`` (or was never sent): stamp them now.

    The caller sends one extract message per uploaded id and a few infer wake-ups; messages may have been
    lost (Redis restarted or flushed), and a duplicate only costs a no-op claim.
    """
    stale = or_(
        Document.wakeup_sent_at.is_(None), Document.wakeup_sent_at < func.now() - seconds(stale_after_s)
    )
    for state in (DocState.UPLOADED, DocState.QUEUED):
        picked = pick_due(state, limit, stale)
        ids = session.scalars(
            update(Document)
            .where(Document.id == picked.c.id)
            .values(wakeup_sent_at=func.now())
            .returning(Document.id)
            .execution_options(**UNCHANGED)
        ).all()
        if state is DocState.UPLOADED:
            counts.extract_wakeups = sorted(ids)
        else:
            counts.infer_due = len(ids)
