"""Uploads: one job per upload, bytes stored once per owner and sha256, documents start `uploaded`.

The caller (the web app, the CLI, a benchmark) commits and then sends the extract wake-ups
(``leximind.messaging.wake_extract``). ``wakeup_sent_at`` is stamped here, in the same transaction, so a
wake-up that never leaves (Redis down, a crash between commit and send) is re-sent by the sweeper.
"""

from __future__ import annotations

import hashlib
import mimetypes
import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.models import Blob, DocState, Document, Job

MAX_FILENAME = 255


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    data: bytes
    content_type: str | None = None


class UploadRejected(ValueError):
    """The whole upload is refused; ``code`` is stable, ``message`` says what to change."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def create_job(
    session: Session,
    owner_id: int,
    files: list[UploadedFile],
    *,
    max_files: int | None = None,
    max_bytes: int | None = None,
) -> tuple[Job, list[Document]]:
    """Store an upload: a job, a blob per distinct content, a document per file (state `uploaded`)."""
    _check_limits(files, max_files, max_bytes)
    job = Job(owner_id=owner_id)
    session.add(job)
    session.flush()
    blob_ids = _store_blobs(session, owner_id, files)
    now = datetime.now(UTC)  # a Python value, so the returned rows stay readable after the session closes
    documents = []
    for upload in files:
        sha = hashlib.sha256(upload.data).hexdigest()
        name = clean_filename(upload.filename)
        documents.append(
            Document(
                job_id=job.id,
                owner_id=owner_id,
                blob_id=blob_ids[sha],
                sha256=sha,
                filename=name,
                content_type=upload.content_type or guess_content_type(name),
                size_bytes=len(upload.data),
                state=DocState.UPLOADED.value,
                attempts=0,
                wakeup_sent_at=now,
            )
        )
    session.add_all(documents)
    session.flush()
    return job, documents


def _check_limits(files: list[UploadedFile], max_files: int | None, max_bytes: int | None) -> None:
    if not files:
        raise UploadRejected("no_files", "The upload contains no files; send one or more `files` parts.")
    if max_files is not None and len(files) > max_files:
        raise UploadRejected(
            "too_many_files", f"{len(files)} files in one upload; the limit is {max_files}. Split the upload."
        )
    if max_bytes is not None:
        for upload in files:
            if len(upload.data) > max_bytes:
                raise UploadRejected(
                    "file_too_large",
                    f"{clean_filename(upload.filename)} is {len(upload.data):,} bytes; "
                    f"the limit is {max_bytes:,} bytes per file.",
                )


def _store_blobs(session: Session, owner_id: int, files: list[UploadedFile]) -> dict[str, int]:
    """Insert each distinct content once per owner (a concurrent upload of the same bytes is fine)."""
    by_sha = {hashlib.sha256(f.data).hexdigest(): f.data for f in files}
    rows = [
        {"owner_id": owner_id, "sha256": sha, "size_bytes": len(data), "data": data}
        for sha, data in by_sha.items()
    ]
    session.execute(insert(Blob).values(rows).on_conflict_do_nothing(index_elements=["owner_id", "sha256"]))
    found = session.execute(
        select(Blob.sha256, Blob.id).where(Blob.owner_id == owner_id, Blob.sha256.in_(list(by_sha)))
    )
    return dict(found.all())


def clean_filename(name: str) -> str:
    """The last path component (browsers and clients send paths), never empty, at most 255 characters."""
    base = posixpath.basename((name or "").replace("\\", "/")).strip().replace("\x00", "")
    base = base or "unnamed"
    if len(base) > MAX_FILENAME:
        stem, dot, ext = base.rpartition(".")
        keep = ext if dot and len(ext) <= 16 else ""
        base = base[: MAX_FILENAME - len(keep) - 1] + "." + keep if keep else base[:MAX_FILENAME]
    return base


def guess_content_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"
