"""The extraction step: uploaded bytes -> text, then queued for the model.

The document is claimed (``uploaded -> extracting``) under a lease longer than the extraction time limit,
so a worker that dies mid-parse leaves a lease the sweeper expires. ``ExtractionError`` is a verdict on the
file (failed, with its code and message, no retry); any other exception is a crash of ours or of the
machine: the document goes back to ``uploaded`` with a backoff, and fails after ``max_attempts``.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from db.jobs import claim_for_extraction, fail_documents, finish_extraction, retry_extraction
from db.models import DocState
from db.session import session_scope
from leximind.config import Settings
from workers.tuning import JobTuning

log = logging.getLogger(__name__)

# seconds on top of the parser's own time limit before the sweeper considers the worker dead
LEASE_SLACK_S = 60.0


class ExtractOutcome(StrEnum):
    QUEUED = "queued"    # text stored; the caller wakes an infer worker
    FAILED = "failed"    # the file cannot be read; the reason is on the document
    RETRY = "retry"      # something broke on our side; back to uploaded with a backoff
    SKIPPED = "skipped"  # not ours to do: gone, already taken, finished, or backing off


Extractor = Callable[..., Any]


def extraction_limits(settings: Settings) -> Any:
    from workers.extraction import ExtractionLimits

    return ExtractionLimits(
        max_bytes=settings.max_upload_bytes,
        max_pages=settings.max_pages,
        max_chars=settings.max_chars,
        timeout_s=settings.extract_timeout_s,
    )


def extract_document(
    database_url: str,
    document_id: int,
    *,
    settings: Settings,
    tuning: JobTuning,
    worker_name: str,
    extractor: Extractor | None = None,
) -> ExtractOutcome:
    from workers.extraction import ExtractionError, extract

    extractor = extractor or extract
    lease = f"{worker_name}/{uuid.uuid4().hex[:12]}"
    with session_scope(database_url) as session:
        claim = claim_for_extraction(session, document_id, lease, settings.extract_timeout_s + LEASE_SLACK_S)
    if claim is None:
        return ExtractOutcome.SKIPPED
    try:
        extracted = extractor(claim.data, filename=claim.filename, content_type=claim.content_type,
                              limits=extraction_limits(settings))
    except ExtractionError as err:
        log.info("document %d (%s) cannot be read: %s", document_id, claim.filename, err.code)
        with session_scope(database_url) as session:
            fail_documents(session, [document_id], lease, DocState.EXTRACTING, code=err.code, message=err.message)
        return ExtractOutcome.FAILED
    except Exception as exc:  # noqa: BLE001 - ours, not the file's: retry with a backoff
        log.exception("extracting document %d crashed (attempt %d)", document_id, claim.attempts)
        with session_scope(database_url) as session:
            state = retry_extraction(
                session, document_id, lease, delay_s=tuning.backoff(claim.attempts),
                max_attempts=settings.max_attempts, code="extraction_crashed",
                message=f"Reading the file failed unexpectedly ({type(exc).__name__}: {exc}).",
            )
        return ExtractOutcome.FAILED if state == DocState.FAILED.value else ExtractOutcome.RETRY
    with session_scope(database_url) as session:
        stored = finish_extraction(session, document_id, lease, text=extracted.text, title=extracted.title,
                                   page_count=extracted.page_count)
    if not stored:
        log.warning("document %d: lease lost while extracting; another worker redid it", document_id)
        return ExtractOutcome.SKIPPED
    return ExtractOutcome.QUEUED
