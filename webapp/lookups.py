"""The caller's own jobs and documents, for pages and the API alike: someone else's is a 404, never a 403.

Job progress shares its throughput measurement for a few seconds: every poller of every job would
otherwise re-measure the same global number, and one measurement per process every THROUGHPUT_TTL_S
seconds is plenty for an ETA.
"""
from __future__ import annotations

import threading
import time

from flask import current_app

from db.history import JobStatus, get_owned_document, job_status, measured_throughput
from db.models import Document
from webapp.auth import is_api_request
from webapp.database import get_db
from webapp.errors import UserError

_lock = threading.Lock()
_measured: dict[str, tuple[float, float | None]] = {}  # database URL -> (monotonic time, documents/s)


def current_throughput() -> float | None:
    url, ttl = current_app.config["DATABASE_URL"], current_app.config.get("THROUGHPUT_TTL_S", 5.0)
    now = time.monotonic()
    with _lock:
        cached = _measured.get(url)
    if cached is not None and now - cached[0] < ttl:
        return cached[1]
    value = measured_throughput(get_db())
    with _lock:
        _measured[url] = (now, value)
    return value


def _listed_under(page: str, api_path: str) -> str:
    """Where the caller's own things are listed: the page's name, and the endpoint for an API client."""
    return f"under {page} (GET {api_path})" if is_api_request() else f"under {page}"


def owned_job_status(owner_id: int, job_id: int) -> JobStatus:
    status = job_status(get_db(), owner_id, job_id, throughput=current_throughput())
    if status is None:
        raise UserError(404, "not_found", f"Job {job_id} does not exist or is not yours. Your uploads are "
                        f"listed {_listed_under('Jobs', '/api/v1/jobs')}.")
    return status


def owned_document(owner_id: int, document_id: int) -> Document:
    document = get_owned_document(get_db(), owner_id, document_id)
    if document is None:
        raise UserError(404, "not_found", f"Document {document_id} does not exist or is not yours. Your "
                        f"documents are listed {_listed_under('History', '/api/v1/documents')}.")
    return document
