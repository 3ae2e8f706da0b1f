"""Document state transitions for the job system. Callers own the session and commit.

Every transition is one guarded UPDATE: a claim only takes rows in the expected state, and every write
after a claim names the lease token it got, so a worker whose lease expired (and whose documents another
worker took over) changes nothing. Results are unique per (document, model version).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    Text,
    case,
    cast,
    column,
    func,
    literal,
    null,
    or_,
    select,
    update,
    values,
)
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.orm import Session

from db.models import Blob, DocState, Document, Result

UNCHANGED = {"synchronize_session": False}


def _seconds(value: float) -> Any:
    return literal(timedelta(seconds=value))


# Rows are picked in a materialised CTE: as ``id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`` the
# planner may re-run the subquery per row and update more than n rows.


def _due() -> Any:
    """Not waiting for a retry backoff."""
    return or_(Document.next_attempt_at.is_(None), Document.next_attempt_at <= func.now())


def _error_message(message: str) -> str:
    return message[:4000]


# ---------------------------------------------------------------------------------------------- extraction
@dataclass
class ExtractionClaim:
    document_id: int
    filename: str
    content_type: str
    data: bytes
    attempts: int
    lease: str


def claim_for_extraction(
    session: Session, document_ids: list[int], lease: str, lease_seconds: float
) -> list[ExtractionClaim]:
    """uploaded -> extracting, atomically, for those of the ids that are still due; in id order.

    Ids that are gone, taken, finished or backing off are left out (a duplicate message is a no-op).
    """
    rows = session.execute(
        _claim(
            Document.id.in_(document_ids) & (Blob.id == Document.blob_id),
            DocState.UPLOADED,
            DocState.EXTRACTING,
            lease,
            lease_seconds,
        ).returning(Document.id, Document.filename, Document.content_type, Document.attempts, Blob.data)
    ).all()
    return sorted(
        (
            ExtractionClaim(r.id, r.filename, r.content_type, bytes(r.data or b""), r.attempts, lease)
            for r in rows
        ),
        key=lambda c: c.document_id,
    )


@dataclass
class ExtractedText:
    document_id: int
    text: str
    title: str | None
    page_count: int | None


def finish_extraction(session: Session, lease: str, extracted: list[ExtractedText]) -> list[int]:
    """extracting -> queued with the text, in one statement; returns the ids this lease still held.

    Stamps the infer wake-up the caller sends after commit.
    """
    if not extracted:
        return []
    rows = values(
        column("id", Integer),
        column("text", Text),
        column("title", String),
        column("page_count", Integer),
        name="extracted",
    ).data([(e.document_id, e.text, e.title[:500] if e.title else None, e.page_count) for e in extracted])
    ids = session.scalars(
        update(Document)
        .where(
            Document.id == rows.c.id,
            Document.lease_owner == lease,
            Document.state == DocState.EXTRACTING.value,
        )
        .values(
            state=DocState.QUEUED.value,
            text=cast(rows.c.text, Text),
            title=cast(rows.c.title, String),
            page_count=cast(rows.c.page_count, Integer),  # a column of NULLs would be typed text
            attempts=0,
            queued_at=func.now(),
            wakeup_sent_at=func.now(),
            next_attempt_at=None,
            error_code=None,
            error_message=None,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=func.now(),
        )
        .returning(Document.id)
        .execution_options(**UNCHANGED)
    ).all()
    return sorted(ids)


def retry_extraction(
    session: Session,
    document_id: int,
    lease: str,
    *,
    delay_s: float,
    max_attempts: int,
    code: str,
    message: str,
) -> str | None:
    """After a crash (not a verdict on the file): back to uploaded with a backoff, or failed when out of tries.

    Returns the new state (None if the lease was lost). The sweeper sends the wake-up once the backoff passed.
    """
    return _retry_or_fail(
        session,
        [document_id],
        lease,
        DocState.EXTRACTING,
        DocState.UPLOADED,
        delay_s=delay_s,
        max_attempts=max_attempts,
        code=code,
        message=message,
    ).get(document_id)


# ---------------------------------------------------------------------------------------------- inference
@dataclass
class ClaimedDocument:
    id: int
    sha256: str
    text: str
    attempts: int


def claim_queued(session: Session, limit: int, lease: str, lease_seconds: float) -> list[ClaimedDocument]:
    """queued -> processing for up to ``limit`` due documents, oldest first, skipping rows others hold."""
    picked = (
        select(Document.id)
        .where(Document.state == DocState.QUEUED.value, _due())
        .order_by(Document.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED")
    )
    rows = session.execute(
        _claim(
            Document.id == picked.c.id, DocState.QUEUED, DocState.PROCESSING, lease, lease_seconds
        ).returning(Document.id, Document.sha256, Document.text, Document.attempts)
    ).all()
    return sorted(
        (ClaimedDocument(r.id, r.sha256, r.text or "", r.attempts) for r in rows), key=lambda d: d.id
    )


def heartbeat(session: Session, lease: str, lease_seconds: float) -> int:
    """Extend every lease this token holds; returns how many rows it still holds."""
    result = session.execute(
        update(Document)
        .where(
            Document.lease_owner == lease,
            Document.state.in_([DocState.PROCESSING.value, DocState.EXTRACTING.value]),
        )
        .values(lease_expires_at=func.now() + _seconds(lease_seconds))
        .execution_options(**UNCHANGED)
    )
    return result.rowcount


def reusable_results(session: Session, sha256s: list[str], model_version_id: int) -> dict[str, Result]:
    """An existing result per content hash for this model version, from any owner's document.

    Identical text through the same weights gives the same output, so the result is copied into a new
    row for the claiming document; nothing of the other owner (ids, filename, feedback) is exposed.
    """
    if not sha256s:
        return {}
    rows = session.execute(
        select(Document.sha256, Result)
        .join(Result, Result.document_id == Document.id)
        .where(Document.sha256.in_(set(sha256s)), Result.model_version_id == model_version_id)
        .order_by(Document.sha256, Result.id)
        .ext(distinct_on(Document.sha256))
    ).all()
    return {sha: result for sha, result in rows}


def complete_documents(
    session: Session, lease: str, model_version_id: int, values_by_id: dict[int, dict[str, Any]]
) -> list[int]:
    """processing -> done with a result, only for rows this lease still holds; returns the ids written.

    The guarded UPDATE runs first and the results are inserted only for the rows it returned, in the same
    transaction: a stale worker writes neither. ON CONFLICT DO NOTHING makes a replay harmless.
    """
    if not values_by_id:
        return []
    ids = session.scalars(
        update(Document)
        .where(
            Document.id.in_(list(values_by_id)),
            Document.lease_owner == lease,
            Document.state == DocState.PROCESSING.value,
        )
        .values(
            state=DocState.DONE.value,
            lease_owner=None,
            lease_expires_at=None,
            next_attempt_at=None,
            error_code=None,
            error_message=None,
            finished_at=func.now(),
            updated_at=func.now(),
        )
        .returning(Document.id)
        .execution_options(**UNCHANGED)
    ).all()
    if ids:
        rows = [{"document_id": i, "model_version_id": model_version_id, **values_by_id[i]} for i in ids]
        # executemany form: one cached statement, batched by insertmanyvalues (a multi-VALUES literal
        # would be compiled anew for every batch size)
        session.execute(
            insert(Result).on_conflict_do_nothing(index_elements=["document_id", "model_version_id"]), rows
        )
    return sorted(ids)


def fail_documents(
    session: Session, ids: list[int], lease: str, from_state: DocState, *, code: str, message: str
) -> int:
    """A verdict on the document itself (unreadable file, input the model rejects): failed, no retry."""
    return _guarded(
        session,
        ids,
        lease,
        from_state,
        state=DocState.FAILED.value,
        error_code=code,
        error_message=_error_message(message),
        finished_at=func.now(),
        next_attempt_at=None,
    )


def retry_documents(
    session: Session,
    ids: list[int],
    lease: str,
    *,
    delay_s: float,
    max_attempts: int,
    code: str,
    message: str,
) -> dict[int, str]:
    """A transient failure: processing -> queued with a backoff, or failed once attempts are used up."""
    return _retry_or_fail(
        session,
        ids,
        lease,
        DocState.PROCESSING,
        DocState.QUEUED,
        delay_s=delay_s,
        max_attempts=max_attempts,
        code=code,
        message=message,
    )


def release_documents(session: Session, ids: list[int], lease: str) -> int:
    """Hand claimed, untried documents back (the active model changed); the attempt does not count."""
    return _guarded(
        session,
        ids,
        lease,
        DocState.PROCESSING,
        state=DocState.QUEUED.value,
        attempts=func.greatest(Document.attempts - 1, 0),
    )


# ---------------------------------------------------------------------------------------------- sweeper
@dataclass
class SweepCounts:
    requeued_processing: int = 0
    requeued_extracting: int = 0
    failed_lost: int = 0
    extract_wakeups: list[int] = field(default_factory=list)
    infer_due: int = 0


def requeue_expired_leases(session: Session, max_attempts: int, counts: SweepCounts) -> None:
    """Leases that expired (the worker died or hung) go back a state, or fail when out of attempts."""
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
                            "(crashed, killed or out of memory) before finishing it; giving up. "
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
        Document.wakeup_sent_at.is_(None), Document.wakeup_sent_at < func.now() - _seconds(stale_after_s)
    )
    for state in (DocState.UPLOADED, DocState.QUEUED):
        picked = (
            select(Document.id)
            .where(Document.state == state.value, _due(), stale)
            .order_by(Document.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("picked")
            .prefix_with("MATERIALIZED")
        )
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


# ---------------------------------------------------------------------------------------------- progress
@dataclass
class JobProgress:
    job_id: int
    total: int
    done: int
    failed: int
    by_state: dict[str, int]

    @property
    def state(self) -> str:
        """processing while anything is unfinished; then done, failed (all failed) or partial."""
        if self.done + self.failed < self.total:
            return "processing"
        if self.failed == 0:
            return "done"
        return "failed" if self.done == 0 else "partial"

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "done": self.done, "failed": self.failed}


def job_progress(session: Session, job_id: int) -> JobProgress:
    counts = dict(
        session.execute(
            select(Document.state, func.count()).where(Document.job_id == job_id).group_by(Document.state)
        ).all()
    )
    return JobProgress(
        job_id=job_id,
        total=sum(counts.values()),
        done=counts.get(DocState.DONE.value, 0),
        failed=counts.get(DocState.FAILED.value, 0),
        by_state=counts,
    )


# ---------------------------------------------------------------------------------------------- helpers
def _claim(which: Any, held: DocState, to: DocState, lease: str, lease_seconds: float) -> Any:
    """The UPDATE that takes due rows in state ``held`` under a new lease and counts the attempt."""
    return (
        update(Document)
        .where(which, Document.state == held.value, _due())
        .values(
            state=to.value,
            lease_owner=lease,
            lease_expires_at=func.now() + _seconds(lease_seconds),
            attempts=Document.attempts + 1,
            updated_at=func.now(),
        )
        .execution_options(**UNCHANGED)
    )


def _guarded(session: Session, ids: list[int], lease: str, from_state: DocState, **values: Any) -> int:
    if not ids:
        return 0
    if values.get("state") in (
        DocState.QUEUED.value,
        DocState.UPLOADED.value,
        DocState.DONE.value,
        DocState.FAILED.value,
    ):
        values = {"lease_owner": None, "lease_expires_at": None, **values}
    result = session.execute(
        update(Document)
        .where(Document.id.in_(ids), Document.lease_owner == lease, Document.state == from_state.value)
        .values(updated_at=func.now(), **values)
        .execution_options(**UNCHANGED)
    )
    return result.rowcount


def _retry_or_fail(
    session: Session,
    ids: list[int],
    lease: str,
    held: DocState,
    back: DocState,
    *,
    delay_s: float,
    max_attempts: int,
    code: str,
    message: str,
) -> dict[int, str]:
    exhausted = Document.attempts >= max_attempts
    final = f"{message} (gave up after {max_attempts} attempts)"
    rows = session.execute(
        update(Document)
        .where(Document.id.in_(ids), Document.lease_owner == lease, Document.state == held.value)
        .values(
            state=case((exhausted, DocState.FAILED.value), else_=back.value),
            error_code=code,
            error_message=case((exhausted, _error_message(final)), else_=_error_message(message)),
            next_attempt_at=case((exhausted, null()), else_=func.now() + _seconds(delay_s)),
            finished_at=case((exhausted, func.now()), else_=null()),
            lease_owner=None,
            lease_expires_at=None,
            wakeup_sent_at=None,
            updated_at=func.now(),
        )
        .returning(Document.id, Document.state)
        .execution_options(**UNCHANGED)
    ).all()
    return dict(rows)
