"""History (search, filters, sorting, pages, export) and the document page with its correction form."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from urllib.parse import quote

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from db.history import (
    HistoryError,
    filter_choices,
    iter_documents,
    list_documents,
    list_feedback,
    record_feedback,
)
from db.models import Blob, DocState
from db.session import get_sessionmaker
from webapp.database import get_db
from webapp.errors import UserError
from webapp.filters import filter_args, history_filter, read_history_filter
from webapp.forms import FeedbackForm, form_problems
from webapp.lookups import owned_document
from webapp.presenters import ERROR_WORDS

bp = Blueprint("documents", __name__)

PAGE_SIZE = 50
PROBLEM_WORDS = {"from": "From", "to": "To", "sort": "Sort", "state": "State", "page": "Page link"}
SORT_WORDS = {"newest": "Newest first", "oldest": "Oldest first", "name": "Name A–Z", "name_desc": "Name Z–A"}
EXPORT_COLUMNS = ["id", "filename", "title", "state", "uploaded_at", "finished_at", "topic", "topic_score",
                  "emotions", "model_version", "summary", "error"]


@bp.get("/documents")
def history():
    """A filter or page link that cannot be read still shows the page and its form: the other filters kept,
    the bad one left out and named (400)."""
    flt, problems = read_history_filter(request.args, current_user.id)
    try:
        page = list_documents(get_db(), flt, after=request.args.get("after"), before=request.args.get("before"),
                              limit=PAGE_SIZE)
    except HistoryError as exc:
        problems["page"] = UserError(400, "invalid_cursor", str(exc))
        page = list_documents(get_db(), flt, limit=PAGE_SIZE)
    args = {name: value for name, value in filter_args(request.args).items() if name not in problems}
    return render_template(
        "history.html", page=page, flt=flt, args=args, choices=filter_choices(get_db()), typed_dates={
            name: _iso_date_or_empty(request.args.get(name, "")) for name in ("from", "to")},
        sorts=SORT_WORDS, states=[s.value for s in DocState], problems=problems, problem_words=PROBLEM_WORDS,
    ), 400 if problems else 200


def _iso_date_or_empty(raw: str) -> str:
    """A date as typed, for the form to show again when the filter left it out (a To before From); "" for one
    a date field cannot show anyway."""
    try:
        return date.fromisoformat(raw.strip()).isoformat()
    except ValueError:
        return ""


def _export_row(row) -> dict:
    return {
        "id": row.id, "filename": row.filename, "title": row.title, "state": row.state,
        "uploaded_at": row.created_at.isoformat(), "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "topic": row.topic_label, "topic_score": row.topic_score, "emotions": row.emotion_labels,
        "model_version": row.model_version, "summary": row.summary,
        "error": row.error_message or ERROR_WORDS.get(row.error_code or "") if row.state == "failed" else None,
    }


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = "; ".join(value)
    text = str(value)
    # a cell starting like a formula would run in a spreadsheet: make it plain text
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_lines(rows: Iterator) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for count, row in enumerate(rows, 1):
        record = _export_row(row)
        writer.writerow([_csv_cell(record[c]) for c in EXPORT_COLUMNS])
        if count % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json_lines(rows: Iterator) -> Iterator[str]:
    yield "["
    for count, row in enumerate(rows):
        yield ("," if count else "") + "\n" + json.dumps(_export_row(row), ensure_ascii=False)
    yield "\n]\n"


@bp.get("/documents/export.<any(csv, json):fmt>")
def export(fmt: str):
    """The whole filtered set (not just one page), streamed as it is read."""
    flt = history_filter(request.args, current_user.id)
    maker = get_sessionmaker(current_app.config["DATABASE_URL"])

    def body() -> Iterator[str]:
        # its own session, closed when the stream ends or the client goes away: a stream outlives the
        # request's teardown, and a transaction left open would hold locks
        with maker() as session:
            rows = iter_documents(session, flt)
            yield from (_csv_lines(rows) if fmt == "csv" else _json_lines(rows))

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    mimetype = "text/csv" if fmt == "csv" else "application/json"
    return Response(body(), mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="leximind-history-{stamp}.{fmt}"'})


def _corrected_so_far(document, result) -> tuple[str, list[str], str]:
    """(topic, emotions, summary) of the result as corrected so far: each field's latest saved correction of
    this result, else the model's value; topic "" keeps the model's."""
    topic, summary = "", result.summary or ""
    emotions = [e["label"] for e in result.emotions or [] if e.get("selected")]
    for saved in reversed(list_feedback(get_db(), document.id)):  # oldest first, so the latest wins
        if saved.result_id != result.id:
            continue
        topic = saved.topic_label or topic
        emotions = saved.emotion_labels if saved.emotion_labels is not None else emotions
        summary = saved.summary or summary
    return topic, emotions, summary


def _feedback_form(document, result) -> FeedbackForm:
    """On GET the form shows the result as corrected so far (after saving, the page shows what was saved, not
    the old values)."""
    form = FeedbackForm()
    topics = sorted((result.topic_scores or {}), key=lambda t: -result.topic_scores[t]) if result else []
    emotions = sorted(e["label"] for e in (result.emotions or [])) if result else []
    form.set_labels(topics, emotions)
    if result is not None and request.method == "GET":
        topic, form.emotions.data, form.summary.data = _corrected_so_far(document, result)
        form.topic.data = topic or None
    return form


def _document_page(document, form: FeedbackForm | None = None, status: int = 200):
    result = document.results[-1] if document.results else None
    return render_template(
        "document.html", document=document, result=result, earlier=list(reversed(document.results[:-1])),
        form=form or _feedback_form(document, result), feedback=list_feedback(get_db(), document.id),
        error_words=ERROR_WORDS,
    ), status


@bp.get("/documents/<int:document_id>")
def document(document_id: int):
    return _document_page(owned_document(current_user.id, document_id))


@bp.post("/documents/<int:document_id>/feedback")
def feedback(document_id: int):
    document = owned_document(current_user.id, document_id)
    result = document.results[-1] if document.results else None
    form = _feedback_form(document, result)
    if not form.validate():
        flash("The correction could not be read. " + form_problems(form), "error")
        return _document_page(document, form, 400)
    selected = [e["label"] for e in (result.emotions or []) if e.get("selected")] if result else []
    emotions = sorted(form.emotions.data or [])
    summary = (form.summary.data or "").strip()
    if result is not None:
        # the form opens as corrected so far: sent back untouched (a second click on Save) it would store the
        # same correction again, and training would count it twice
        topic_now, emotions_now, summary_now = _corrected_so_far(document, result)
        if (form.topic.data or "", emotions, summary) == (topic_now, sorted(emotions_now), summary_now.strip()):
            flash("Nothing to save: the form shows this result as corrected so far. Change the topic, the "
                  "emotions or the summary first.", "error")
            return _document_page(document, form, 400)
    session = get_db()
    try:
        record_feedback(
            session, current_user.id, document, topic_label=form.topic.data or None,
            emotion_labels=emotions if emotions != sorted(selected) else None,
            summary=summary if result is not None and summary != result.summary.strip() else None,
        )
    except HistoryError as exc:
        flash(str(exc), "error")
        return _document_page(document, form, 400)
    session.commit()
    flash("Thank you: the correction is saved and will be used in the next training run.", "info")
    return redirect(url_for("documents.document", document_id=document.id, _anchor="correct"), code=303)


@bp.get("/documents/<int:document_id>/original")
def original(document_id: int):
    document = owned_document(current_user.id, document_id)
    blob = get_db().get(Blob, document.blob_id)
    # always a download, never rendered: an uploaded HTML page must not run on our origin
    return Response(blob.data, mimetype="application/octet-stream", headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(document.filename, safe='')}"})
