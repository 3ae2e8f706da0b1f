"""Documents: upload (202 + Location of the job), list with filters, show with results, feedback."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, url_for
from flask_login import current_user

from db.history import HistoryError, list_documents, record_feedback
from webapp.api.helpers import json_body, page_limit
from webapp.database import get_db
from webapp.errors import UserError
from webapp.extensions import limiter
from webapp.filters import history_filter
from webapp.lookups import owned_document
from webapp.presenters import document_dict
from webapp.uploads import accept_upload

bp = Blueprint("documents", __name__)
FEEDBACK_FIELDS = ("topic", "emotions", "summary")


def upload_limit() -> str:
    return current_app.config["UPLOAD_RATE_LIMIT"]


@bp.post("/documents")
@limiter.shared_limit(upload_limit, scope="upload")
def upload():
    job, documents = accept_upload(current_user.id, request.files.getlist("files"))
    location = url_for("api.jobs.show", job_id=job.id)
    body = {"job_id": job.id, "job_url": location,
            "documents": [{"id": d.id, "filename": d.filename, "state": d.state} for d in documents]}
    return jsonify(body), 202, {"Location": location}


@bp.get("/documents")
def index():
    flt = history_filter(request.args, current_user.id)
    try:
        page = list_documents(get_db(), flt, after=request.args.get("after"), before=request.args.get("before"),
                              limit=page_limit())
    except HistoryError as exc:
        raise UserError(400, "invalid_cursor", str(exc)) from None
    return jsonify(
        documents=[row.to_dict() for row in page.rows],
        total=page.total, total_capped=page.total_capped,
        next_cursor=page.next_cursor, prev_cursor=page.prev_cursor,
    )


@bp.get("/documents/<int:document_id>")
def show(document_id: int):
    text = request.args.get("text", "0")
    if text not in ("0", "1"):  # not silently ignored: `?text=true` would answer without the text
        raise UserError(400, "invalid_parameter", f"text must be 1 (include the extracted text) or 0, not {text!r}.")
    return jsonify(document_dict(owned_document(current_user.id, document_id), with_text=text == "1"))


@bp.post("/documents/<int:document_id>/feedback")
def feedback(document_id: int):
    document = owned_document(current_user.id, document_id)
    data = json_body()
    unknown = [name for name in data if name not in FEEDBACK_FIELDS]
    if unknown:  # a misspelt field would otherwise be dropped without a word
        raise UserError(400, "invalid_feedback", f"Unknown field(s): {', '.join(unknown)}. A correction takes "
                        f"{', '.join(FEEDBACK_FIELDS)}.")
    emotions = data.get("emotions")
    if emotions is not None and not (isinstance(emotions, list) and all(isinstance(e, str) for e in emotions)):
        raise UserError(400, "invalid_feedback", "`emotions` must be a list of emotion labels.")
    for name in ("topic", "summary"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise UserError(400, "invalid_feedback", f"`{name}` must be a string.")
    session = get_db()
    try:
        row = record_feedback(session, current_user.id, document, topic_label=data.get("topic") or None,
                              emotion_labels=emotions, summary=data.get("summary"))
    except HistoryError as exc:
        raise UserError(400, "invalid_feedback", str(exc)) from None
    session.commit()
    return jsonify(id=row.id, document_id=document.id, topic=row.topic_label, emotions=row.emotion_labels,
                   summary=row.summary), 201
