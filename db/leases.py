"""Claims and leases: which worker holds which documents, and the guard every later write goes through.

A claim takes due rows in the expected state under a fresh lease token; every write after it names that
token and the state it expects (:func:`update_held`), so a worker whose lease expired (and whose rows
another worker took over) changes nothing. Callers own the session and commit.

Attempts count runs, not claims: a claim charges nothing, and :func:`start_attempts` charges the documents
of a batch just before the model (or the parser) runs on them. When a worker dies, the sweeper can then
tell the documents it was working on (charged) from the ones merely waiting behind them in its claim.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Update, func, literal, or_, select, update
from sqlalchemy.orm import Session

from db.models import Blob, DocState, Document

UNCHANGED = {"synchronize_session": False}
# states in which a document has no lease: a write that ends in one of them clears the lease
UNLEASED = (DocState.UPLOADED.value, DocState.QUEUED.value, DocState.DONE.value, DocState.FAILED.value)


def seconds(value: float) -> Any:
    return literal(timedelta(seconds=value))


def due() -> Any:
    """Not waiting for a retry backoff."""
    return or_(Document.next_attempt_at.is_(None), Document.next_attempt_at <= func.now())


def update_held(lease: str, held: DocState | Iterable[DocState], *where: Any, **values: Any) -> Update:
    """The guarded UPDATE: rows this lease still holds in state ``held`` (and matching ``where``).

    Stamps ``updated_at``; a move to a state without a lease clears the lease too.
    """
    states = [held.value] if isinstance(held, DocState) else [s.value for s in held]
    if values.get("state") in UNLEASED:
        values = {"lease_owner": None, "lease_expires_at": None, **values}
    return (
        update(Document)
        .where(Document.lease_owner == lease, Document.state.in_(states), *where)
        .values(updated_at=func.now(), **values)
        .execution_options(**UNCHANGED)
    )


def _claim(which: Any, held: DocState, to: DocState, lease: str, lease_seconds: float) -> Update:
    """The UPDATE that takes due rows in state ``held`` under a new lease (no attempt is charged yet)."""
    return (
        update(Document)
        .where(which, Document.state == held.value, due())
        .values(
            state=to.value,
            lease_owner=lease,
            lease_expires_at=func.now() + seconds(lease_seconds),
            updated_at=func.now(),
        )
        .execution_options(**UNCHANGED)
    )


# Rows are picked in a materialised CTE: as ``id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`` the
# planner may re-run the subquery per row and update more than n rows.
def pick_due(state: DocState, limit: int, *where: Any) -> Any:
    return (
        select(Document.id)
        .where(Document.state == state.value, due(), *where)
        .order_by(Document.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED")
    )


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
class ClaimedDocument:
    id: int
    sha256: str
    text: str
    attempts: int  # runs started before this claim


def claim_queued(session: Session, limit: int, lease: str, lease_seconds: float) -> list[ClaimedDocument]:
    """queued -> processing for up to ``limit`` due documents, oldest first, skipping rows others hold."""
    picked = pick_due(DocState.QUEUED, limit)
    rows = session.execute(
        _claim(
            Document.id == picked.c.id, DocState.QUEUED, DocState.PROCESSING, lease, lease_seconds
        ).returning(Document.id, Document.sha256, Document.text, Document.attempts)
    ).all()
    return sorted(
        (ClaimedDocument(r.id, r.sha256, r.text or "", r.attempts) for r in rows), key=lambda d: d.id
    )


def start_attempts(
    session: Session | Connection, ids: list[int], lease: str, held: DocState
) -> dict[int, int]:
    """Charge an attempt to the documents about to run; returns each held id's attempt number.

    Commit before the run: if the worker dies during it, these are the documents the sweeper charges.
    """
    if not ids:
        return {}
    rows = session.execute(
        update_held(lease, held, Document.id.in_(ids), attempts=Document.attempts + 1).returning(
            Document.id, Document.attempts
        )
    ).all()
    return dict(rows)


# extraction charges every file on its own, before reading it: plain SQL on the driver, which psycopg
# prepares after a few uses (the same guard as ``update_held``; SQLAlchemy's compiled UPDATE ... RETURNING
# cost 0.65 ms of client CPU a call, this about 0.06 ms)
_CHARGE_ONE = (
    "UPDATE documents SET attempts = attempts + 1, updated_at = now() "
    "WHERE id = %(id)s AND lease_owner = %(lease)s AND state = %(state)s RETURNING attempts"
)


def start_attempt(connection: Connection, document_id: int, lease: str, held: DocState) -> int | None:
    """``start_attempts`` for one document, on an autocommit connection; None when the lease lost it."""
    row = connection.exec_driver_sql(_CHARGE_ONE, {"id": document_id, "lease": lease, "state": held.value}).first()
    return row[0] if row else None


def heartbeat(session: Session, lease: str, lease_seconds: float) -> int:
    """Extend every lease this token holds; returns how many rows it still holds."""
    result = session.execute(
        update_held(
            lease,
            (DocState.PROCESSING, DocState.EXTRACTING),
            lease_expires_at=func.now() + seconds(lease_seconds),
        )
    )
    return result.rowcount


def refund_documents(session: Session, ids: list[int], lease: str) -> int:
    """Hand charged documents back with their attempt refunded: the model failed, not they (it failed on a
    plain probe text too; see ``workers.inference``), so the try must not count towards failing them."""
    if not ids:
        return 0
    return session.execute(
        update_held(lease, DocState.PROCESSING, Document.id.in_(ids), state=DocState.QUEUED.value,
                    attempts=func.greatest(Document.attempts - 1, 0))
    ).rowcount


def release_documents(session: Session, ids: list[int], lease: str) -> int:
    """Hand claimed, untried documents back (the model changed, time is up, the worker stops).

    Untried documents were never charged, so their attempts stay as they are.
    """
    if not ids:
        return 0
    return session.execute(
        update_held(lease, DocState.PROCESSING, Document.id.in_(ids), state=DocState.QUEUED.value)
    ).rowcount
