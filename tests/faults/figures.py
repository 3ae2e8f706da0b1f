"""What a fault run left behind, counted from Postgres, and written to test-artifacts/reliability/<name>.json.

The figures every reliability test reports (docs/reliability.md tabulates them):
- documents_in: documents the run uploaded;
- done / failed, and failed_by_reason (error code -> count);
- failed_without_reason: failed with no error code or message (must be 0);
- lost: uploaded documents that are missing or not in a final state when the run ends (must be 0);
- duplicated: documents with more than one result row, or failed with a result (must be 0);
- done_without_result: done, but no result row (must be 0);
- leases_left: documents still holding a lease after the run (must be 0);
- wall_s: from the first upload to the last document finishing.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from db.models import DocState, Document, Result
from db.session import session_scope

REPORT_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"
FINAL = (DocState.DONE.value, DocState.FAILED.value)


@dataclass
class Figures:
    test: str
    documents_in: int
    done: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    failed_without_reason: int = 0
    lost: int = 0
    duplicated: int = 0
    done_without_result: int = 0
    leases_left: int = 0
    wall_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def problems(self) -> list[str]:
        checks = {"lost": self.lost, "duplicated": self.duplicated, "leases_left": self.leases_left,
                  "done_without_result": self.done_without_result,
                  "failed_without_reason": self.failed_without_reason,
                  "unaccounted": self.documents_in - self.done - self.failed - self.lost}
        return [f"{name}={value}" for name, value in checks.items() if value]

    def write(self) -> Path:
        REPORT_DIR.mkdir(parents=True, exist_ok=True)
        path = REPORT_DIR / f"{self.test}.json"
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=False) + "\n")
        return path


def count(database_url: str, test: str, ids: list[int], wall_s: float, **details: Any) -> Figures:
    """Count the outcome of the documents ``ids``; nothing here changes the database."""
    wanted = set(ids)
    with session_scope(database_url) as session:
        rows = session.execute(
            select(Document.id, Document.state, Document.error_code, Document.error_message,
                   Document.lease_owner, Document.lease_expires_at).where(Document.id.in_(wanted))
        ).all()
        results = dict(session.execute(
            select(Result.document_id, func.count()).where(Result.document_id.in_(wanted))
            .group_by(Result.document_id)).all())
    figures = Figures(test=test, documents_in=len(ids), wall_s=round(wall_s, 2), details=details)
    seen = set()
    for row in rows:
        seen.add(row.id)
        if row.lease_owner is not None or row.lease_expires_at is not None:
            figures.leases_left += 1
        n_results = results.get(row.id, 0)
        if row.state == DocState.DONE.value:
            figures.done += 1
            figures.duplicated += n_results > 1
            figures.done_without_result += n_results == 0
        elif row.state == DocState.FAILED.value:
            figures.failed += 1
            figures.duplicated += n_results > 0
            code = row.error_code or "(none)"
            figures.failed_by_reason[code] = figures.failed_by_reason.get(code, 0) + 1
            if not row.error_code or not (row.error_message or "").strip():
                figures.failed_without_reason += 1
        else:
            figures.lost += 1
    figures.lost += len(wanted - seen)
    figures.failed_by_reason = dict(sorted(figures.failed_by_reason.items()))
    return figures


def finished(database_url: str, ids: list[int]) -> int:
    with session_scope(database_url) as session:
        return session.scalar(
            select(func.count()).where(Document.id.in_(ids), Document.state.in_(FINAL))) or 0


def states(database_url: str) -> dict[str, int]:
    with session_scope(database_url) as session:
        return dict(session.execute(select(Document.state, func.count()).group_by(Document.state)).all())
