"""The inference loop: claim queued documents, run the model in length-bucketed batches, write results.

One pass of ``process_queue`` drains every due document: claim up to N rows under a fresh lease token,
copy results that already exist for the same content and model version, run the rest batch by batch
(a failing batch is split in halves until the bad document stands alone), write each batch's results
guarded by the lease, and go again. A background thread extends the lease while a batch runs. The
active model version is checked between batches; when it changes, untried documents go back to the queue
and the next round loads the new version.

Failure handling, by where it happens:
- one document's input makes the model raise: that document fails (``inference_error``), alone;
- documents fail and the model also fails on a plain probe text (``PROBE_TEXT``): the model or the code is
  broken, not the documents. The failure is recorded on the version (as a load failure is: the previous good
  version serves meanwhile, or documents wait, and the version is tried again after the retry interval) and
  the documents go back to ``queued`` with their attempt refunded, so a broken model fails no document;
- every document of a batch fails the same way, or the error looks transient (out of memory, lost
  connection): each goes back to ``queued`` with an exponential backoff until ``max_attempts``;
- the process dies (SIGKILL, OOM killer) or the database is unreachable: nothing is written; the lease
  expires and the sweeper re-queues the rows. Only the batch that was running was charged an attempt
  (charged as it starts, not at claim), so documents waiting behind it lose nothing. Documents that were
  in such a batch before run alone next time, after the fresh ones, so a crashing document takes down
  nothing but itself;
- the model version's artifact does not load: the failure is recorded on the version and the previous
  good version serves meanwhile (or, without one, documents wait queued); nothing is claimed or charged.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from db.leases import ClaimedDocument, claim_queued, refund_documents, release_documents, start_attempts
from db.models import DocState, ModelVersion, Result
from db.outcomes import complete_documents, fail_documents, retry_documents, reusable_results
from db.session import session_scope
from db.versions import record_load_failure, serving_version_id
from leximind.config import JobTuning, Settings
from workers.lease import LeaseHeartbeat
from workers.model_resolution import serving_predictor

log = logging.getLogger(__name__)

# set when this process is asked to stop (SIGTERM; workers/celery_app.py): the loop finishes the batch it is
# running, hands back what it claimed but has not started, and claims nothing more
stop_requested = threading.Event()

# run when documents fail: if the model fails on this too, the fault is not in the documents
PROBE_TEXT = "The city council met on Tuesday and agreed on next year's budget for schools and roads."


class Predictor(Protocol):
    """What the loop needs from ``model.pipeline.Pipeline`` (tests pass fakes)."""

    version: str

    def run(self, texts: list[str]) -> list[Any]: ...


PredictorFor = Callable[[ModelVersion], Predictor]


@dataclass
class LoopReport:
    claimed: int = 0
    done: int = 0
    reused: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0
    lease_lost: int = 0  # results computed but not written: another worker owns the rows now
    refunded: int = 0  # handed back uncharged: the model failed on the probe text too
    no_model: bool = False
    stopped: bool = False  # ran out of time with work possibly left (see ``max_seconds``)
    rounds: int = 0


@dataclass
class _Group:
    """Claimed documents with the same content: the model runs once for all of them."""

    docs: list[ClaimedDocument]

    @property
    def text(self) -> str:
        return self.docs[0].text

    @property
    def ids(self) -> list[int]:
        return [d.id for d in self.docs]

    @property
    def suspect(self) -> bool:
        """Ran before without an outcome (its batch may have died on it) or failed transiently."""
        return any(d.attempts > 0 for d in self.docs)

    @property
    def attempts(self) -> int:
        return max(d.attempts for d in self.docs)


@dataclass
class _Outcome:
    group: _Group
    prediction: Any = None
    error: BaseException | None = None
    transient: bool = False


def process_queue(
    database_url: str,
    predictor_for: PredictorFor,
    *,
    settings: Settings,
    tuning: JobTuning,
    worker_name: str,
    max_rounds: int | None = None,
    max_seconds: float | None = None,
    on_full_claim: Callable[[], None] | None = None,
) -> LoopReport:
    """Drain due documents; returns when the queue is empty, no model is active, after ``max_rounds``
    claims, or once ``max_seconds`` have passed (``report.stopped``: work may be left).

    Past ``max_seconds`` the loop finishes the batch it is running and hands the untried documents of its
    claim back to the queue, so a worker asked to stop (a warm shutdown waits for the running task) stops
    within one batch. ``on_full_claim`` is called when a claim came back full (more work is likely
    waiting), so the caller can wake a peer worker.
    """
    report = LoopReport()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    while max_rounds is None or report.rounds < max_rounds:
        if deadline is not None and report.rounds and time.monotonic() > deadline:
            report.stopped = True  # at least one claim per call, so every wake-up makes progress
            break
        if stop_requested.is_set():
            report.stopped = True
            break
        served = serving_predictor(database_url, predictor_for, tuning.model_retry_s)
        if served is None:
            report.no_model = True
            break
        version, predictor = served
        lease = f"{worker_name}/{uuid.uuid4().hex[:12]}"
        with session_scope(database_url) as session:
            claimed = claim_queued(session, settings.claim_batch_size, lease, settings.lease_seconds)
        if not claimed:
            break
        report.rounds += 1
        report.claimed += len(claimed)
        if len(claimed) >= settings.claim_batch_size and on_full_claim is not None:
            on_full_claim()
        _process_claim(database_url, claimed, version, predictor, lease, settings, tuning, report, deadline)
    return report


def _process_claim(
    database_url: str,
    claimed: list[ClaimedDocument],
    version: ModelVersion,
    predictor: Predictor,
    lease: str,
    settings: Settings,
    tuning: JobTuning,
    report: LoopReport,
    deadline: float | None = None,
) -> None:
    empty = [d.id for d in claimed if not d.text.strip()]
    if empty:
        with session_scope(database_url) as session:
            report.failed += fail_documents(
                session,
                empty,
                lease,
                DocState.PROCESSING,
                code="no_text",
                message="The document has no text to read (extraction produced nothing).",
            )
    claimed = [d for d in claimed if d.text.strip()]
    groups = _reuse_existing(database_url, claimed, version, lease, report)
    with LeaseHeartbeat(database_url, lease, settings.lease_seconds) as beat:
        batches = _batches(groups, tuning)
        for index, batch in enumerate(batches):
            untried = [g for b in batches[index:] for g in b]
            if beat.lost:
                log.warning("lease %s was taken over; dropping %d untried documents", lease, len(untried))
                break
            stopping = stop_requested.is_set()
            out_of_time = stopping or (deadline is not None and index > 0 and time.monotonic() > deadline)
            with session_scope(database_url) as session:
                if out_of_time or serving_version_id(session, tuning.model_retry_s) != version.id:
                    report.released += release_documents(session, [i for g in untried for i in g.ids], lease)
                    report.stopped = report.stopped or out_of_time
                    reason = (
                        "the worker is stopping"
                        if stopping
                        else "time is up"
                        if out_of_time
                        else "the model to serve changed"
                    )
                    log.info("released %d untried documents (%s)", len(untried), reason)
                    break
                batch = _charge(session, batch, lease)
            if not batch:
                continue
            outcomes = _predict_isolating(predictor, batch)
            if any(o.error is not None and not o.transient for o in outcomes):
                broken = _probe(predictor)
                if broken is not None:
                    outcomes = _hold_for_broken_model(database_url, outcomes, version, broken, lease, report)
            if len(batch) > 1 and all(o.error is not None for o in outcomes):
                for o in outcomes:  # the same failure everywhere points at the model or the machine
                    o.transient = True
            _write(database_url, outcomes, version, lease, tuning, settings, report)


def _probe(predictor: Predictor) -> BaseException | None:
    """The model's error on a plain text, or None when it handles one."""
    try:
        predictor.run([PROBE_TEXT])
    except Exception as exc:  # noqa: BLE001 - whatever it is, it is the model's, not a document's
        return exc
    return None


def _hold_for_broken_model(
    database_url: str,
    outcomes: list[_Outcome],
    version: ModelVersion,
    broken: BaseException,
    lease: str,
    report: LoopReport,
) -> list[_Outcome]:
    """The model fails on the probe text too: hand the failed documents back with their attempt refunded
    and record the failure on the version (the loop then serves the previous good version, or none).
    Returns the outcomes left to write (the successes)."""
    failed = [i for o in outcomes if o.error is not None and not o.transient for i in o.group.ids]
    reason = f"{type(broken).__name__}: {broken}"
    log.error("model version %s fails on a plain probe text (%s): %d document(s) go back to the queue",
              version.name, reason, len(failed))
    with session_scope(database_url) as session:
        report.refunded += refund_documents(session, failed, lease)
        record_load_failure(session, version.id, f"it fails on every document, even a plain probe text "
                                                 f"({reason}); its documents wait in the queue, uncharged")
    return [o for o in outcomes if o.error is None or o.transient]


def _reuse_existing(
    database_url: str, claimed: list[ClaimedDocument], version: ModelVersion, lease: str, report: LoopReport
) -> list[_Group]:
    """Copy results computed for the same content by this model version; group the rest by content."""
    with session_scope(database_url) as session:
        existing = reusable_results(session, [d.sha256 for d in claimed], version.id)
        copies = {d.id: _copy_values(existing[d.sha256]) for d in claimed if d.sha256 in existing}
        written = complete_documents(session, lease, version.id, copies)
    report.reused += len(written)
    report.done += len(written)
    by_sha: dict[str, list[ClaimedDocument]] = {}
    for doc in claimed:
        if doc.id not in copies:
            by_sha.setdefault(doc.sha256, []).append(doc)
    return [_Group(docs) for docs in by_sha.values()]


def _batches(groups: list[_Group], tuning: JobTuning) -> list[list[_Group]]:
    """Fresh documents in length-sorted batches under a document and token budget; suspects alone, last."""
    fresh = sorted((g for g in groups if not g.suspect), key=lambda g: len(g.text))
    batches: list[list[_Group]] = []
    current: list[_Group] = []
    tokens = 0
    for group in fresh:
        cost = max(1, len(group.text) // 4)
        if current and (len(current) >= tuning.infer_batch_docs or tokens + cost > tuning.infer_batch_tokens):
            batches.append(current)
            current, tokens = [], 0
        current.append(group)
        tokens += cost
    if current:
        batches.append(current)
    batches.extend([g] for g in groups if g.suspect)
    return batches


def _charge(session: Any, batch: list[_Group], lease: str) -> list[_Group]:
    """Count an attempt for each document of the batch about to run (committed before it runs).

    Drops documents this lease no longer holds; each group's ``attempts`` becomes the run's number.
    """
    attempts = start_attempts(session, [i for g in batch for i in g.ids], lease, DocState.PROCESSING)
    charged = []
    for group in batch:
        docs = [
            ClaimedDocument(d.id, d.sha256, d.text, attempts[d.id]) for d in group.docs if d.id in attempts
        ]
        if docs:
            charged.append(_Group(docs))
    return charged


def _predict_isolating(predictor: Predictor, batch: list[_Group]) -> list[_Outcome]:
    """Run a batch; on an exception split it in halves, recursively, so only the culprit fails."""
    try:
        predictions = predictor.run([g.text for g in batch])
        if len(predictions) != len(batch):
            raise RuntimeError(f"the pipeline returned {len(predictions)} predictions for {len(batch)} texts")
        return [_Outcome(g, prediction=p) for g, p in zip(batch, predictions, strict=True)]
    except Exception as exc:  # noqa: BLE001 - any model failure is handled per document below
        if len(batch) == 1 or is_transient(exc):
            if len(batch) > 1:
                log.warning("transient failure on a batch of %d: %r", len(batch), exc)
            return [_Outcome(g, error=exc, transient=is_transient(exc)) for g in batch]
        middle = len(batch) // 2
        return _predict_isolating(predictor, batch[:middle]) + _predict_isolating(predictor, batch[middle:])


def is_transient(exc: BaseException) -> bool:
    """Failures that say nothing about the document: memory pressure, lost connections, timeouts."""
    if isinstance(exc, MemoryError | ConnectionError | TimeoutError):
        return True
    name = type(exc).__name__
    if name in ("OutOfMemoryError", "OperationalError", "InterfaceError", "DisconnectionError"):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "cublas_status_alloc_failed" in text


def _write(
    database_url: str,
    outcomes: list[_Outcome],
    version: ModelVersion,
    lease: str,
    tuning: JobTuning,
    settings: Settings,
    report: LoopReport,
) -> None:
    values = {
        doc_id: result_values(o.prediction) for o in outcomes if o.error is None for doc_id in o.group.ids
    }
    with session_scope(database_url) as session:
        written = complete_documents(session, lease, version.id, values)
        report.done += len(written)
        report.lease_lost += len(values) - len(written)
        for o in outcomes:
            if o.error is None:
                continue
            reason = f"{type(o.error).__name__}: {o.error}"
            if o.transient:
                states = retry_documents(
                    session,
                    o.group.ids,
                    lease,
                    delay_s=tuning.backoff(o.group.attempts),
                    max_attempts=settings.max_attempts,
                    code="inference_transient",
                    message=f"The model could not process this document right now ({reason}).",
                )
                report.retried += sum(1 for s in states.values() if s == DocState.QUEUED.value)
                report.failed += sum(1 for s in states.values() if s == DocState.FAILED.value)
            else:
                log.warning("document(s) %s failed in the model: %s", o.group.ids, reason)
                report.failed += fail_documents(
                    session,
                    o.group.ids,
                    lease,
                    DocState.PROCESSING,
                    code="inference_error",
                    message=f"The model failed on this document ({reason}). Other documents were not "
                    "affected; check that the file holds ordinary text.",
                )


def result_values(prediction: Any) -> dict[str, Any]:
    """A ``DocumentPrediction`` (see docs/contracts.md) as the columns of a results row.

    Reads the attributes directly: ``dataclasses.asdict`` deep-copies every float and cost 3 ms a document.
    """
    topic = prediction.topic
    emotions = sorted(
        (
            {
                "label": e.label,
                "score": float(e.score),
                "threshold": float(e.threshold),
                "selected": bool(e.selected),
            }
            for e in prediction.emotions
        ),
        key=lambda e: -e["score"],
    )
    return {
        "summary": prediction.summary or "",
        "topic_label": topic.label if topic is not None else None,
        "topic_score": float(topic.score) if topic is not None else None,
        "topic_scores": {label: float(p) for label, p in topic.scores.items()} if topic is not None else {},
        "emotions": emotions,
        "emotion_labels": [e["label"] for e in emotions if e["selected"]],
        "timings": {stage: float(seconds) for stage, seconds in (prediction.timings or {}).items()},
    }


def _copy_values(result: Result) -> dict[str, Any]:
    return {
        "summary": result.summary,
        "topic_label": result.topic_label,
        "topic_score": result.topic_score,
        "topic_scores": result.topic_scores,
        "emotions": result.emotions,
        "emotion_labels": result.emotion_labels,
        "timings": {},
        "reused_from_id": result.reused_from_id or result.id,
    }
