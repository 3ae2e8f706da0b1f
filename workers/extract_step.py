"""The extraction step: uploaded bytes -> text, then queued for the model.

A message names one document or a few (see ``leximind.messaging.wake_extract``). They are claimed
together (``uploaded -> extracting``) under one lease that a heartbeat keeps alive, so a worker that dies
mid-parse leaves a lease the sweeper expires. Each document is then read on its own, and charged an
attempt just before (so a worker that dies charges only the file it was reading):

- ``ExtractionError`` is a verdict on the file: failed, with its code and message, no retry;
- any other exception is a crash of ours or of the machine: back to ``uploaded`` with a backoff, and
  failed after ``max_attempts``.

What was read is written in the transaction that charges the next file (one per file: the price of
charging only the file in flight), and the infer worker is woken every WAKE_EVERY_S and at the end.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from db.leases import ExtractionClaim, claim_for_extraction, start_attempts
from db.models import DocState
from db.outcomes import ExtractedText, fail_documents, finish_extraction, retry_extraction
from db.session import session_scope
from leximind.config import JobTuning, Settings
from workers.lease import LeaseHeartbeat

log = logging.getLogger(__name__)

# seconds on top of the parser's own time limit before the sweeper considers the worker dead
LEASE_SLACK_S = 60.0
WAKE_EVERY_S = 0.25


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
    """Read each document; returns every id's outcome. ``on_queued`` runs when text was queued (throttled)."""
    from workers.extraction import extract

    lease = f"{worker_name}/{uuid.uuid4().hex[:12]}"
    lease_seconds = settings.extract_timeout_s + LEASE_SLACK_S
    outcomes = dict.fromkeys(document_ids, ExtractOutcome.SKIPPED)
    with session_scope(database_url) as session:
        claims = claim_for_extraction(session, list(document_ids), lease, lease_seconds)
    if not claims:
        return outcomes
    batch = _Outcomes(database_url, lease, settings, tuning, outcomes, on_queued)
    limits = extraction_limits(settings)
    with LeaseHeartbeat(database_url, lease, lease_seconds):
        for claim in claims:
            if batch.write(starting=claim):
                batch.add(claim, _read(extractor or extract, claim, limits))
        batch.write()
    return outcomes


def extract_document(database_url: str, document_id: int, **kwargs: Any) -> ExtractOutcome:
    return extract_documents(database_url, [document_id], **kwargs)[document_id]


def _read(extractor: Extractor, claim: ExtractionClaim, limits: Any) -> Any:
    """The extracted text, or the exception that stopped it (sorted out by ``_Outcomes.add``)."""
    try:
        return extractor(claim.data, filename=claim.filename, content_type=claim.content_type, limits=limits)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on its document
        return exc


class _Outcomes:
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
        self.unannounced = 0  # documents queued since the last infer wake-up

    def add(self, claim: ExtractionClaim, result: Any) -> None:
        if isinstance(result, BaseException):
            self.failures.append((claim, result))
        else:
            self.texts.append(ExtractedText(claim.document_id, result.text, result.title, result.page_count))

    def write(self, starting: ExtractionClaim | None = None) -> bool:
        """Write the outcomes read so far and, with ``starting``, charge that document's attempt, in one
        transaction: everything read before a file is on record before it is read, so a worker that dies
        reading it is charged for that file alone. Returns whether the lease still holds ``starting``.
        """
        from workers.extraction import ExtractionError

        held = True
        with session_scope(self.database_url) as session:
            queued = finish_extraction(session, self.lease, self.texts)
            for document_id in queued:
                self.outcomes[document_id] = ExtractOutcome.QUEUED
            for claim, err in self.failures:
                self.outcomes[claim.document_id] = self._fail(session, claim, err, ExtractionError)
            if starting is not None:
                attempts = start_attempts(session, [starting.document_id], self.lease, DocState.EXTRACTING)
                held = starting.document_id in attempts
                starting.attempts = attempts.get(starting.document_id, starting.attempts)
        lost = {t.document_id for t in self.texts} - set(queued)
        if lost:
            log.warning("documents %s: lease lost while extracting; another worker redid them", sorted(lost))
        self.texts, self.failures = [], []
        self.unannounced += len(queued)
        # wake the infer queue at most every WAKE_EVERY_S while reading, and once at the end
        if self.unannounced and (starting is None or time.monotonic() - self.last >= WAKE_EVERY_S):
            self.last, self.unannounced = time.monotonic(), 0
            if self.on_queued is not None:
                self.on_queued()
        return held

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
