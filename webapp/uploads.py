"""Turning a multipart upload into a job: checks a person can act on, then db.uploads, then wake-ups.

Shared by the upload page and `POST /api/v1/documents`. The whole upload is refused if any file is
unacceptable, with every file's problem listed, so nothing half-arrives.
"""
from __future__ import annotations

import posixpath

from flask import current_app
from werkzeug.datastructures import FileStorage

from db.models import Document, Job
from db.uploads import UploadedFile, UploadRejected, create_job
from webapp.config import ACCEPTED_EXTENSIONS
from webapp.database import get_db
from webapp.errors import UserError
from webapp.queue import wake_extract


class UploadProblem(UserError):
    """The upload is refused (400); `files` lists each file's problem as {"filename", "error"}."""

    def __init__(self, code: str, message: str, files: list[dict[str, str]] | None = None):
        super().__init__(400, code, message, {"files": files} if files else None)
        self.files = files or []


def accepted_types_text() -> str:
    names = dict.fromkeys(ACCEPTED_EXTENSIONS.values())
    return ", ".join(names) + " (" + ", ".join(sorted(ACCEPTED_EXTENSIONS)) + ")"


def _file_problem(name: str, data: bytes) -> str | None:
    extension = posixpath.splitext(name.lower())[1]
    if extension and extension not in ACCEPTED_EXTENSIONS:
        return f"{extension} files are not supported; accepted: {accepted_types_text()}."
    if not data:
        return "The file is empty."
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if len(data) > limit:
        return f"The file is {len(data) / 1048576:.1f} MB; the limit is {limit / 1048576:.0f} MB."
    return None


def accept_upload(owner_id: int, parts: list[FileStorage]) -> tuple[Job, list[Document]]:
    parts = [part for part in parts if part.filename]
    if not parts:
        raise UploadProblem("no_files", "The upload contains no files. Choose one or more files "
                            "(API: send them as multipart form parts named `files`).")
    limit = current_app.config["MAX_FILES_PER_UPLOAD"]
    if len(parts) > limit:
        raise UploadProblem("too_many_files", f"{len(parts)} files in one upload; the limit is {limit}. "
                            "Split them over several uploads.")
    files, problems = [], []
    for part in parts:
        data = part.read()
        problem = _file_problem(part.filename, data)
        if problem:
            problems.append({"filename": part.filename, "error": problem})
        files.append(UploadedFile(filename=part.filename, data=data, content_type=part.mimetype or None))
    if problems:
        names = ", ".join(p["filename"] for p in problems)
        raise UploadProblem("rejected_files", f"Nothing was uploaded: {len(problems)} file(s) cannot be "
                            f"processed ({names}). Remove or replace them and upload again.", problems)
    session = get_db()
    try:
        job, documents = create_job(session, owner_id, files, max_files=limit,
                                    max_bytes=current_app.config["MAX_CONTENT_LENGTH"])
    except UploadRejected as exc:
        session.rollback()
        raise UploadProblem(exc.code, exc.message) from exc
    session.commit()
    wake_extract([d.id for d in documents])
    return job, documents
