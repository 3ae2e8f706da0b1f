"""The read side people see: history of documents, job progress with queue position and ETA, feedback.

History is keyset-paginated on (sort key, id), so the thousandth page costs what the first one costs; each
document's latest result is a LATERAL lookup through results(document_id). Everything is scoped to an owner.
Callers own the session.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, asc, bindparam, desc, func, or_, select, true, tuple_
from sqlalchemy.orm import Session

from db.jobs import JobProgress
from db.models import DocState, Document, Feedback, Job, ModelVersion, Result

WAITING_STATES = (DocState.UPLOADED.value, DocState.EXTRACTING.value, DocState.QUEUED.value,
                  DocState.PROCESSING.value)
FINISHED_STATES = (DocState.DONE.value, DocState.FAILED.value)
COUNT_CAP = 10_000          # "10,000+" beyond this: an exact count of a huge set is not worth a scan
RESULT_COUNT_CAP = 1_000    # the same where a filter reads each document's latest result (a lookup per row)
QUEUE_COUNT_CAP = 100_000
THROUGHPUT_SAMPLE = 200     # finished documents the throughput estimate looks at
THROUGHPUT_WINDOW_S = 600   # finishes older than this say nothing about the speed now

# sort name -> (column, direction)
SORTS = {
    "newest": (Document.created_at, desc),
    "oldest": (Document.created_at, asc),
    "name": (Document.filename, asc),
    "name_desc": (Document.filename, desc),
}


class HistoryError(ValueError):
    """A bad filter, sort or cursor; the message says what to change."""


@dataclass
class HistoryFilter:
    owner_id: int
    q: str = ""                       # web-search syntax over title, file name and text
    topic: str | None = None
    emotion: str | None = None
    state: str | None = None
    date_from: date | None = None     # inclusive, by upload day (UTC)
    date_to: date | None = None       # inclusive
    model_version: str | None = None  # version name of the latest result
    sort: str = "newest"

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise HistoryError(f"Unknown sort {self.sort!r}; use one of: {', '.join(SORTS)}.")
        if self.state and self.state not in {s.value for s in DocState}:
            raise HistoryError(f"Unknown state {self.state!r}; use one of: {', '.join(s.value for s in DocState)}.")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise HistoryError("The start date is after the end date; swap them.")


@dataclass
class HistoryRow:
    id: int
    job_id: int
    filename: str
    title: str | None
    state: str
    error_code: str | None
    error_message: str | None
    size_bytes: int
    created_at: datetime
    finished_at: datetime | None
    result_id: int | None
    summary: str | None
    topic_label: str | None
    topic_score: float | None
    emotion_labels: list[str]
    model_version: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "job_id": self.job_id, "filename": self.filename, "title": self.title,
            "state": self.state,
            "error": {"code": self.error_code, "message": self.error_message} if self.error_code else None,
            "size_bytes": self.size_bytes, "created_at": _iso(self.created_at),
            "finished_at": _iso(self.finished_at), "summary": self.summary,
            "topic": ({"label": self.topic_label, "score": self.topic_score} if self.topic_label else None),
            "emotions": self.emotion_labels, "model_version": self.model_version,
        }


@dataclass
class HistoryPage:
    rows: list[HistoryRow]
    next_cursor: str | None   # further along in the chosen order
    prev_cursor: str | None   # back towards the start
    total: int
    total_capped: bool        # total is a lower bound (COUNT_CAP reached)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _latest_result():
    return (
        select(Result.id.label("result_id"), Result.summary, Result.topic_label, Result.topic_score,
               Result.emotion_labels, Result.model_version_id)
        .where(Result.document_id == Document.id)
        .order_by(Result.id.desc())
        .limit(1)
        .correlate(Document)
        .lateral("latest")
    )


def _reads_results(flt: HistoryFilter) -> bool:
    return bool(flt.topic or flt.emotion or flt.model_version)


def _matches(q: str) -> Any:
    """Words in the title, file name or text (web-search syntax, stemmed), or, for a query of one term, a part
    of the file name ("doc_010" finds doc_010.txt: the text parser reads a file name as one token)."""
    words = Document.search.op("@@")(func.websearch_to_tsquery("english", q))
    if " " in q or '"' in q:
        return words
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return or_(words, Document.filename.ilike(pattern, escape="\\"))


def _filtered(flt: HistoryFilter, *, rows: bool = True) -> Select:
    """The filtered documents; `rows=False` selects only ids and joins results only if a filter needs them."""
    latest = _latest_result()
    stmt = select(Document.id).select_from(Document)
    if rows:
        stmt = select(
            Document.id, Document.job_id, Document.filename, Document.title, Document.state,
            Document.error_code, Document.error_message, Document.size_bytes, Document.created_at,
            Document.finished_at, latest.c.result_id, latest.c.summary, latest.c.topic_label,
            latest.c.topic_score, latest.c.emotion_labels, ModelVersion.name.label("model_version"),
        ).select_from(Document)
    if rows or _reads_results(flt):
        stmt = stmt.outerjoin(latest, true()).outerjoin(ModelVersion, ModelVersion.id == latest.c.model_version_id)
    stmt = stmt.where(Document.owner_id == flt.owner_id)
    if flt.q.strip():
        stmt = stmt.where(_matches(flt.q.strip()))
    if flt.state:
        stmt = stmt.where(Document.state == flt.state)
    if flt.topic:
        stmt = stmt.where(latest.c.topic_label == flt.topic)
    if flt.emotion:
        stmt = stmt.where(latest.c.emotion_labels.contains([flt.emotion]))
    if flt.model_version:
        stmt = stmt.where(ModelVersion.name == flt.model_version)
    if flt.date_from:
        stmt = stmt.where(Document.created_at >= datetime.combine(flt.date_from, time.min, UTC))
    if flt.date_to and flt.date_to < date.max:  # up to 9999-12-31 bounds nothing (and has no next day)
        stmt = stmt.where(Document.created_at < datetime.combine(flt.date_to + timedelta(days=1), time.min, UTC))
    return stmt


def encode_cursor(row: HistoryRow, sort: str) -> str:
    """The row's place in one order; the order's name rides along, so a cursor is never read in another."""
    key = row.created_at.isoformat() if SORTS[sort][0] is Document.created_at else row.filename
    return base64.urlsafe_b64encode(json.dumps([sort, key, row.id]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> tuple[Any, int]:
    try:
        made_for, key, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(key, str) or not isinstance(row_id, int):
            raise TypeError("a cursor holds a text key and a whole-number id")  # else the query itself fails
        if SORTS[sort][0] is Document.created_at:
            key = datetime.fromisoformat(key)
    except (ValueError, TypeError) as exc:
        raise HistoryError("That page link is broken or out of date; go back to the first page.") from exc
    if made_for != sort:
        raise HistoryError(f"That page link belongs to the {made_for!r} order, not {sort!r}; go back to the first "
                           "page of this order.")
    return key, row_id


def _ordered(stmt: Select, sort: str, cursor: str | None, backwards: bool) -> Select:
    column, direction = SORTS[sort]
    if backwards:
        direction = asc if direction is desc else desc
    if cursor:
        key, row_id = _decode_cursor(cursor, sort)
        pair, bound = tuple_(column, Document.id), tuple_(key, row_id)
        stmt = stmt.where(pair < bound if direction is desc else pair > bound)
    return stmt.order_by(direction(column), direction(Document.id))


def _rows(session: Session, stmt: Select) -> list[HistoryRow]:
    return [HistoryRow(**{**row._mapping, "emotion_labels": row.emotion_labels or []})
            for row in session.execute(stmt)]


def list_documents(session: Session, flt: HistoryFilter, *, after: str | None = None,
                   before: str | None = None, limit: int = 50) -> HistoryPage:
    """One page of the owner's documents. `after` pages forward, `before` pages back (cursors from a page)."""
    if after and before:
        raise HistoryError("Ask for the page after one cursor or before one, not both.")
    limit = max(1, min(limit, 500))
    base = _filtered(flt)
    rows = _rows(session, _ordered(base, flt.sort, before or after, backwards=bool(before)).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    if before:
        rows.reverse()
        next_cursor = encode_cursor(rows[-1], flt.sort) if rows else before
        prev_cursor = encode_cursor(rows[0], flt.sort) if more and rows else None
    else:
        next_cursor = encode_cursor(rows[-1], flt.sort) if more and rows else None
        prev_cursor = encode_cursor(rows[0], flt.sort) if after and rows else None
    cap = RESULT_COUNT_CAP if _reads_results(flt) else COUNT_CAP
    total = session.scalar(
        select(func.count()).select_from(_filtered(flt, rows=False).limit(cap + 1).subquery())
    ) or 0
    return HistoryPage(rows, next_cursor, prev_cursor, min(total, cap), total > cap)


def iter_documents(session: Session, flt: HistoryFilter, batch: int = 1000) -> Iterator[HistoryRow]:
    """Every document of the filtered set, in the chosen order, streamed (for exports)."""
    stmt = _ordered(_filtered(flt), flt.sort, None, backwards=False)
    for row in session.execute(stmt.execution_options(yield_per=batch)):
        yield HistoryRow(**{**row._mapping, "emotion_labels": row.emotion_labels or []})


@dataclass
class FilterChoices:
    topics: list[str] = field(default_factory=list)
    emotions: list[str] = field(default_factory=list)
    model_versions: list[str] = field(default_factory=list)


def filter_choices(session: Session) -> FilterChoices:
    """The labels and versions there are to filter by. Every result lists all of its version's topics and
    emotions with their scores, so any one result per version will do (an index probe, not a sort)."""
    choices = FilterChoices()
    topics: set[str] = set()
    emotions: set[str] = set()
    for version_id, name in session.execute(select(ModelVersion.id, ModelVersion.name).order_by(ModelVersion.id)):
        choices.model_versions.append(name)
        sample = session.execute(
            select(Result.topic_scores, Result.emotions).where(Result.model_version_id == version_id).limit(1)
        ).first()
        if sample is not None:
            topics.update(sample.topic_scores or {})
            emotions.update(e["label"] for e in sample.emotions or [] if "label" in e)
    choices.topics, choices.emotions = sorted(topics), sorted(emotions)
    return choices


# ---- jobs ----------------------------------------------------------------------------------------

@dataclass
class DocumentStatus:
    id: int
    filename: str
    state: str
    error_code: str | None
    error_message: str | None
    finished_at: datetime | None


@dataclass
class JobStatus:
    id: int
    created_at: datetime
    state: str              # queued | processing | done | partial (some failed) | failed (all failed)
    total: int
    done: int
    failed: int
    in_progress: int
    documents: list[DocumentStatus]
    queue_position: int | None   # documents of other jobs ahead of this one's first unfinished document
    eta_seconds: float | None    # None: finished, or no measured throughput to go by
    throughput: float | None     # documents/second, measured over the most recent finished ones
    waiting_for_model: bool = False  # documents wait and no model version is active yet (starter training)


def derive_job_state(total: int, done: int, failed: int, started: bool) -> str:
    """db.jobs.JobProgress's state (processing | done | partial | failed), with `queued` for a job
    none of whose documents has been picked up yet."""
    state = JobProgress(job_id=0, total=total, done=done, failed=failed, by_state={}).state
    return "queued" if state == "processing" and not (started or done or failed) else state


def measured_throughput(session: Session, now: datetime | None = None) -> float | None:
    """Documents per second lately: the most recent finished documents (up to THROUGHPUT_SAMPLE, within
    THROUGHPUT_WINDOW_S) over the time since the oldest of them finished. Workers finish whole batches at
    one timestamp, so the span between finishes alone would overstate the rate; measuring up to now also
    lets the estimate fall when workers stop. None when nothing finished lately."""
    recent = (
        select(Document.finished_at).where(Document.state == DocState.DONE.value)
        .order_by(Document.id.desc()).limit(THROUGHPUT_SAMPLE).subquery()
    )
    now = now or datetime.now(UTC)
    count, first = session.execute(
        select(func.count(), func.min(recent.c.finished_at))
        .where(recent.c.finished_at > now - timedelta(seconds=THROUGHPUT_WINDOW_S))
    ).one()
    if not count or first is None:
        return None
    return count / max((now - first).total_seconds(), 1.0)


# built once: job pages and API clients poll these all the time
_JOB_DOCUMENTS = (
    select(Job.created_at, Document.id, Document.filename, Document.state, Document.error_code,
           Document.error_message, Document.finished_at)
    .select_from(Job).outerjoin(Document, Document.job_id == Job.id)
    .where(Job.id == bindparam("job_id"), Job.owner_id == bindparam("owner_id")).order_by(Document.id)
)
_NO_MODEL = select(~select(ModelVersion.id).where(ModelVersion.is_active.is_(True)).exists())
_AHEAD = select(func.count()).select_from(
    select(Document.id)
    .where(Document.state.in_(WAITING_STATES), Document.id < bindparam("first_id"),
           Document.job_id != bindparam("job_id"))
    .limit(QUEUE_COUNT_CAP).subquery()
)


def job_status(session: Session, owner_id: int, job_id: int,
               throughput: float | None = None) -> JobStatus | None:
    """The owner's job with every document's state, queue position and ETA; None if not theirs.

    One query for the job and its documents, plus a count of what is ahead while it waits."""
    rows = session.execute(_JOB_DOCUMENTS, {"job_id": job_id, "owner_id": owner_id}).all()
    if not rows:
        return None
    created_at = rows[0].created_at
    docs = [DocumentStatus(*row[1:]) for row in rows if row.id is not None]
    done = sum(d.state == DocState.DONE.value for d in docs)
    failed = sum(d.state == DocState.FAILED.value for d in docs)
    waiting = [d.id for d in docs if d.state in WAITING_STATES]
    started = any(d.state in (DocState.EXTRACTING.value, DocState.PROCESSING.value) for d in docs)
    queue_position = eta = None
    no_model = False
    if waiting:
        queue_position = session.scalar(_AHEAD, {"first_id": min(waiting), "job_id": job_id}) or 0
        no_model = bool(session.scalar(_NO_MODEL))
        if throughput and not no_model:
            eta = (queue_position + len(waiting)) / throughput
    return JobStatus(
        id=job_id, created_at=created_at, state=derive_job_state(len(docs), done, failed, started),
        total=len(docs), done=done, failed=failed, in_progress=len(waiting), documents=docs,
        queue_position=queue_position, eta_seconds=eta, throughput=throughput, waiting_for_model=no_model,
    )


@dataclass
class JobSummary:
    id: int
    created_at: datetime
    total: int
    done: int
    failed: int
    started: int  # documents being read or processed right now
    first_filename: str | None

    @property
    def state(self) -> str:
        return derive_job_state(self.total, self.done, self.failed, started=self.started > 0)


def list_jobs(session: Session, owner_id: int, *, before_id: int | None = None, limit: int = 50) -> list[JobSummary]:
    """The owner's jobs, newest first, with document counts (pages by job id)."""
    page = select(Job.id, Job.created_at).where(Job.owner_id == owner_id)
    if before_id is not None:
        page = page.where(Job.id < before_id)
    page = page.order_by(Job.id.desc()).limit(max(1, min(limit, 200))).subquery()
    stmt = (
        select(page.c.id, page.c.created_at, func.count(Document.id),
               func.count().filter(Document.state == DocState.DONE.value),
               func.count().filter(Document.state == DocState.FAILED.value),
               func.count().filter(Document.state.in_((DocState.EXTRACTING.value, DocState.PROCESSING.value))),
               func.min(Document.filename))
        .select_from(page).outerjoin(Document, Document.job_id == page.c.id)
        .group_by(page.c.id, page.c.created_at).order_by(page.c.id.desc())
    )
    return [JobSummary(*row) for row in session.execute(stmt)]


# ---- documents and feedback ------------------------------------------------------------------------

def get_owned_document(session: Session, owner_id: int, document_id: int) -> Document | None:
    return session.scalar(select(Document).where(Document.id == document_id, Document.owner_id == owner_id))


MAX_FEEDBACK_SUMMARY = 5000  # characters; the correction form's limit too


def record_feedback(session: Session, user_id: int, document: Document, *, topic_label: str | None = None,
                    emotion_labels: list[str] | None = None, summary: str | None = None) -> Feedback:
    """Store a person's correction of the document's latest result, checked against that result's labels."""
    result = document.results[-1] if document.results else None
    if result is None and document.state == DocState.FAILED.value:
        why = f" Why it failed: {document.error_message}" if document.error_message else ""
        raise HistoryError("This document could not be processed, so it has no result to correct; upload a "
                           f"fixed file to get one.{why}")
    if result is None:
        raise HistoryError("This document has no result yet; wait until it is done, then correct it.")
    summary = summary.strip() if summary else None
    if summary and len(summary) > MAX_FEEDBACK_SUMMARY:
        raise HistoryError(f"The summary is {len(summary):,} characters; a summary is at most "
                           f"{MAX_FEEDBACK_SUMMARY:,}. Shorten it.")
    if topic_label is None and emotion_labels is None and not summary:
        raise HistoryError("Nothing to save: change the topic, the emotions or the summary first.")
    # the labels are named: an API client has no list on screen, and 'world' is not 'World'
    if topic_label is not None and topic_label not in (result.topic_scores or {}):
        raise HistoryError(f"{topic_label!r} is not a topic this model knows; pick one from the list: "
                           f"{', '.join(sorted(result.topic_scores or {}))}.")
    known_emotions = {e.get("label") for e in result.emotions or []}
    unknown = sorted(set(emotion_labels or []) - known_emotions)
    if unknown:
        raise HistoryError(f"Unknown emotions {', '.join(unknown)}; pick from the list: "
                           f"{', '.join(sorted(map(str, known_emotions)))}.")
    feedback = Feedback(document_id=document.id, result_id=result.id, user_id=user_id, topic_label=topic_label,
                        emotion_labels=sorted(set(emotion_labels)) if emotion_labels is not None else None,
                        summary=summary)
    session.add(feedback)
    session.flush()
    return feedback


def list_feedback(session: Session, document_id: int) -> list[Feedback]:
    return list(session.scalars(select(Feedback).where(Feedback.document_id == document_id)
                                .order_by(Feedback.id.desc())))

