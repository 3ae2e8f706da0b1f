"""Upload and jobs: where documents go in, and where people watch them being processed."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from db.history import list_jobs
from webapp.api.helpers import whole_number_arg
from webapp.config import ACCEPTED_EXTENSIONS
from webapp.database import get_db
from webapp.errors import wants_json
from webapp.extensions import limiter
from webapp.lookups import owned_job_status
from webapp.presenters import ERROR_WORDS
from webapp.uploads import UploadProblem, accept_upload, accepted_types_text

bp = Blueprint("pages", __name__)


def upload_limit() -> str:
    return current_app.config["UPLOAD_RATE_LIMIT"]


@bp.get("/")
def home():
    return redirect(url_for("pages.upload"))


def _upload_page(problem: UploadProblem | None = None, status: int = 200):
    config = current_app.config
    return render_template(
        "upload.html", accepted=accepted_types_text(), extensions=sorted(ACCEPTED_EXTENSIONS),
        max_bytes=config["MAX_CONTENT_LENGTH"], max_files=config["MAX_FILES_PER_UPLOAD"],
        problem=problem, recent_jobs=list_jobs(get_db(), current_user.id, limit=5),
    ), status


@bp.get("/upload")
def upload():
    return _upload_page()


@bp.post("/upload")
@limiter.shared_limit(upload_limit, scope="upload")
def upload_files():
    """The form posts here; our script asks for JSON and moves to the job page itself."""
    try:
        job, _documents = accept_upload(current_user.id, request.files.getlist("files"))
    except UploadProblem as exc:
        if wants_json():
            raise
        return _upload_page(exc, 400)
    job_url = url_for("pages.job", job_id=job.id)
    if wants_json():
        return jsonify(job_id=job.id, job_url=job_url), 201
    return redirect(job_url, code=303)


@bp.get("/jobs")
def jobs():
    before = whole_number_arg("before", code="invalid_cursor")
    page = list_jobs(get_db(), current_user.id, before_id=before, limit=50)
    return render_template("jobs.html", jobs=page, next_before=page[-1].id if len(page) == 50 else None)


@bp.get("/jobs/<int:job_id>")
def job(job_id: int):
    return render_template("job.html", job=owned_job_status(current_user.id, job_id), error_words=ERROR_WORDS)
