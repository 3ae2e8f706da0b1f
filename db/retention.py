"""Retention: delete finished documents (with their results and stored bytes) older than a policy.

Policy (environment, read by ``RetentionPolicy.from_env``):
- ``LEXIMIND_RETENTION_DAYS``: documents that finished (done or failed) more than this many days ago are
  deleted; unset or 0 keeps everything (the default: nothing is deleted unless an operator asks);
- ``LEXIMIND_RETENTION_KEEP_CORRECTED`` (default 1): documents someone corrected are kept, because their
  corrections are training examples (``feedback`` rows go with their document);
- ``LEXIMIND_RETENTION_BATCH`` (default 1000): documents per transaction, so no purge holds locks for long.

A purge deletes documents (results and feedback follow by ``ON DELETE CASCADE``), then jobs left with no
documents that were created before the cutoff, then stored files (blobs) that no document uses any more.
Documents still in flight are never touched: only ``done`` and ``failed`` ones have a ``finished_at``.
Beat runs it on the maintenance queue (``leximind.retention``); callers own the session for one batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, exists, select
from sqlalchemy.orm import Session

from db.models import Blob, DocState, Document, Feedback, Job
from db.session import session_scope


@dataclass(frozen=True)
class RetentionPolicy:
    days: float = 0.0  # 0: keep everything
    keep_corrected: bool = True
    batch: int = 1000

    @classmethod
    def from_env(cls) -> RetentionPolicy:
        return cls(days=float(os.environ.get("LEXIMIND_RETENTION_DAYS") or 0),
                   keep_corrected=os.environ.get("LEXIMIND_RETENTION_KEEP_CORRECTED", "1") != "0",
                   batch=int(os.environ.get("LEXIMIND_RETENTION_BATCH") or 1000))

    @property
    def enabled(self) -> bool:
        return self.days > 0

    def cutoff(self, now: datetime | None = None) -> datetime:
        return (now or datetime.now(UTC)) - timedelta(days=self.days)


@dataclass
class PurgeCounts:
    documents: int = 0
    jobs: int = 0
    blobs: int = 0
    cutoff: str | None = None
    batches: int = field(default=0, repr=False)


def purge_batch(session: Session, cutoff: datetime, limit: int, keep_corrected: bool = True) -> int:
    """Delete up to ``limit`` documents that finished before ``cutoff``; returns how many."""
    expired = and_(Document.state.in_([DocState.DONE.value, DocState.FAILED.value]),
                   Document.finished_at < cutoff)
    if keep_corrected:
        expired = and_(expired, ~exists().where(Feedback.document_id == Document.id))
    picked = (select(Document.id).where(expired).order_by(Document.id).limit(limit)
              .with_for_update(skip_locked=True).scalar_subquery())
    return len(session.scalars(delete(Document).where(Document.id.in_(picked)).returning(Document.id)).all())


def purge_empty_jobs(session: Session, cutoff: datetime) -> int:
    empty = ~exists().where(Document.job_id == Job.id)
    return len(session.scalars(delete(Job).where(empty, Job.created_at < cutoff).returning(Job.id)).all())


def purge_unused_blobs(session: Session, cutoff: datetime) -> int:
    unused = ~exists().where(Document.blob_id == Blob.id)
    return len(session.scalars(delete(Blob).where(unused, Blob.created_at < cutoff).returning(Blob.id)).all())


def purge(database_url: str, policy: RetentionPolicy | None = None, now: datetime | None = None,
          max_batches: int = 1000) -> PurgeCounts:
    """Apply the policy in short transactions; a no-op when retention is off."""
    policy = policy or RetentionPolicy.from_env()
    counts = PurgeCounts()
    if not policy.enabled:
        return counts
    cutoff = policy.cutoff(now)
    counts.cutoff = cutoff.isoformat(timespec="seconds")
    while counts.batches < max_batches:
        with session_scope(database_url) as session:
            deleted = purge_batch(session, cutoff, policy.batch, policy.keep_corrected)
        counts.documents += deleted
        counts.batches += 1
        if deleted < policy.batch:
            break
    with session_scope(database_url) as session:
        counts.jobs = purge_empty_jobs(session, cutoff)
    with session_scope(database_url) as session:
        counts.blobs = purge_unused_blobs(session, cutoff)
    return counts
