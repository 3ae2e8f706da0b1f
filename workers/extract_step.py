"""The extraction step: uploaded bytes -> text, then queued for the model.

A message names one document or a few (see ``leximind.messaging.wake_extract``). They are claimed
together (``uploaded -> extracting``) under one lease that a heartbeat keeps alive, so a worker that dies
mid-parse leaves a lease the sweeper expires. Each document is then read on its own:

- ``ExtractionError`` is a verdict on the file: failed, with its code and message, no retry;
- any other exception is a crash of ours or of the machine: back to ``uploaded`` with a backoff, and
  failed after ``max_attempts``.

Finished texts are written in one statement per flush (every FLUSH_EVERY_S and at the end), so a batch of
small files costs two transactions, not two per file, and the infer worker hears about them early.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from db.jobs import (
    ExtractedText,
    ExtractionClaim,
    claim_for_extraction,
    fail_documents,
    finish_extraction,
    retry_extraction,
)
from db.models import DocState
from db.session import session_scope
from leximind.config import Settings
from workers.lease import LeaseHeartbeat
from workers.tuning import JobTuning

log = logging.getLogger(__name__)

# seconds on top of the parser's own time limit before the sweeper considers the worker dead
LEASE_SLACK_S = 60.0
FLUSH_EVERY_S = 0.25


class ExtractOutcome(StrEnum):
    QUEUED = "queued"  # text stored; an infer worker is woken
    FAILED = "failed"  # the file cannot be read; the reason is on the document
    RETRY = "retry"  # something broke on our side; back to uploaded with a backoff
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


def extract_documents(
    database_url: str,
    document_ids: list[int],
    *,
    settings: Settings,
    tuning: JobTuning,
    worker_name: str,
    extractor: Extractor | None = None,
    on_queued: Callable[[], None] | None = None,
) -> dict[int, ExtractOutcome]:
    """Read each document; returns every id's outcome. ``on_queued`` runs after each flush that queued text."""
    from workers.extraction import extract

    lease = f"{worker_name}/{uuid.uuid4().hex[:12]}"
    lease_seconds = settings.extract_timeout_s + LEASE_SLACK_S
    outcomes = dict.fromkeys(document_ids, ExtractOutcome.SKIPPED)
    with session_scope(database_url) as session:
        claims = claim_for_extraction(session, list(document_ids), lease, lease_seconds)
    if not claims:
        return outcomes
    batch = _Flush(database_url, lease, settings, tuning, outcomes, on_queued)
    limits = extraction_limits(settings)
    with LeaseHeartbeat(database_url, lease, lease_seconds):
        for claim in claims:
            batch.add(claim, _read(extractor or extract, claim, limits))
            if batch.due():
                batch.flush()
        batch.flush()
    return outcomes


def extract_document(database_url: str, document_id: int, **kwargs: Any) -> ExtractOutcome:
    return extract_documents(database_url, [document_id], **kwargs)[document_id]


def _read(extractor: Extractor, claim: ExtractionClaim, limits: Any) -> Any:
    """The extracted text, or the exception that stopped it (sorted out by ``_Flush.add``)."""
    try:
        return extractor(claim.data, filename=claim.filename, content_type=claim.content_type, limits=limits)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on its document
        return exc


class _Flush:
    """Outcomes waiting to be written in one transaction."""

    def __init__(
        self,
        database_url: str,
        lease: str,
        settings: Settings,
        tuning: JobTuning,
        outcomes: dict[int, ExtractOutcome],
        on_queued: Callable[[], None] | None,
    ):
        self.database_url, self.lease, self.settings, self.tuning = database_url, lease, settings, tuning
        self.outcomes, self.on_queued = outcomes, on_queued
        self.texts: list[ExtractedText] = []
        self.failures: list[tuple[ExtractionClaim, BaseException]] = []
        self.last = time.monotonic()

    def add(self, claim: ExtractionClaim, result: Any) -> None:
        if isinstance(result, BaseException):
            self.failures.append((claim, result))
        else:
            self.texts.append(ExtractedText(claim.document_id, result.text, result.title, result.page_count))

    def due(self) -> bool:
        return time.monotonic() - self.last >= FLUSH_EVERY_S

    def flush(self) -> None:
        from workers.extraction import ExtractionError

        self.last = time.monotonic()
        if not self.texts and not self.failures:
            return
        with session_scope(self.database_url) as session:
            queued = finish_extraction(session, self.lease, self.texts)
            for document_id in queued:
                self.outcomes[document_id] = ExtractOutcome.QUEUED
            for claim, err in self.failures:
                self.outcomes[claim.document_id] = self._fail(session, claim, err, ExtractionError)
        lost = {t.document_id for t in self.texts} - set(queued)
        if lost:
            log.warning("documents %s: lease lost while extracting; another worker redid them", sorted(lost))
        self.texts, self.failures = [], []
        if queued and self.on_queued is not None:
            self.on_queued()

    def _fail(
        self, session: Any, claim: ExtractionClaim, err: BaseException, verdict: type
    ) -> ExtractOutcome:
        if isinstance(err, verdict):
            log.info("document %d (%s) cannot be read: %s", claim.document_id, claim.filename, err.code)
            fail_documents(
                session,
                [claim.document_id],
                self.lease,
                DocState.EXTRACTING,
                code=err.code,
                message=err.message,
            )
            return ExtractOutcome.FAILED
        log.error(
            "extracting document %d crashed (attempt %d)", claim.document_id, claim.attempts, exc_info=err
        )
        state = retry_extraction(
            session,
            claim.document_id,
            self.lease,
            delay_s=self.tuning.backoff(claim.attempts),
            max_attempts=self.settings.max_attempts,
            code="extraction_crashed",
            message=f"Reading the file failed unexpectedly ({type(err).__name__}: {err}).",
        )
        return ExtractOutcome.FAILED if state == DocState.FAILED.value else ExtractOutcome.RETRY
