"""Jobs: one per upload. Poll GET /jobs/<id> for progress, queue position and ETA."""
from __future__ import annotations

from flask import Blueprint, jsonify
from flask_login import current_user

from db.history import list_jobs
from webapp.api.helpers import MAX_ID, page_limit, whole_number_arg
from webapp.database import get_db
from webapp.lookups import owned_job_status
from webapp.presenters import job_status_dict, job_summary_dict

bp = Blueprint("jobs", __name__)


@bp.get("/jobs")
def index():
    before = whole_number_arg("before", maximum=MAX_ID, code="invalid_cursor")
    limit = page_limit(default=50, maximum=200)
    jobs = list_jobs(get_db(), current_user.id, before_id=before, limit=limit)
    return jsonify(jobs=[job_summary_dict(j) for j in jobs],
                   next_before=jobs[-1].id if len(jobs) == limit else None)


@bp.get("/jobs/<int:job_id>")
def show(job_id: int):
    return jsonify(job_status_dict(owned_job_status(current_user.id, job_id)))
