"""A job's progress, derived from its documents. Callers own the session.

The document state machine lives beside this module: ``db.leases`` (claims, the lease guard, attempts),
``db.outcomes`` (texts, results, failures, retries) and ``db.sweeps`` (what the sweeper recovers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import DocState, Document


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
