"""How claimed documents end: text stored, results written, failed with a reason, or retried later.

Every write goes through the lease guard (``db.leases.update_held``): only rows the caller's lease still
holds change. Results are unique per (document, model version). Callers own the session and commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, String, Text, case, cast, column, func, null, select, values
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.orm import Session

from db.leases import seconds, update_held
from db.models import DocState, Document, Result


def error_message(message: str) -> str:
    return message[:4000]


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
        update_held(
            lease,
            DocState.EXTRACTING,
            Document.id == rows.c.id,
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
        ).returning(Document.id)
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
    return retry_documents(
        session,
        [document_id],
        lease,
        held=DocState.EXTRACTING,
        delay_s=delay_s,
        max_attempts=max_attempts,
        code=code,
        message=message,
    ).get(document_id)


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
        update_held(
            lease,
            DocState.PROCESSING,
            Document.id.in_(list(values_by_id)),
            state=DocState.DONE.value,
            next_attempt_at=None,
            error_code=None,
            error_message=None,
            finished_at=func.now(),
        ).returning(Document.id)
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
    if not ids:
        return 0
    return session.execute(
        update_held(
            lease,
            from_state,
            Document.id.in_(ids),
            state=DocState.FAILED.value,
            error_code=code,
            error_message=error_message(message),
            finished_at=func.now(),
            next_attempt_at=None,
        )
    ).rowcount


# where a retried document goes back to, by the state it was held in
RETRY_BACK = {DocState.PROCESSING: DocState.QUEUED, DocState.EXTRACTING: DocState.UPLOADED}


def retry_documents(
    session: Session,
    ids: list[int],
    lease: str,
    *,
    held: DocState = DocState.PROCESSING,
    delay_s: float,
    max_attempts: int,
    code: str,
    message: str,
) -> dict[int, str]:
    """A transient failure: back a state (processing -> queued, extracting -> uploaded) with a backoff, or
    failed once attempts are used up. Returns each id's new state."""
    exhausted = Document.attempts >= max_attempts
    final = f"{message} (gave up after {max_attempts} attempts)"
    rows = session.execute(
        update_held(
            lease,
            held,
            Document.id.in_(ids),
            state=case((exhausted, DocState.FAILED.value), else_=RETRY_BACK[held].value),
            error_code=code,
            error_message=case((exhausted, error_message(final)), else_=error_message(message)),
            next_attempt_at=case((exhausted, null()), else_=func.now() + seconds(delay_s)),
            finished_at=case((exhausted, func.now()), else_=null()),
            lease_owner=None,  # the new state is computed in SQL, so update_held cannot see it
            lease_expires_at=None,
            wakeup_sent_at=None,
        ).returning(Document.id, Document.state)
    ).all()
    return dict(rows)
