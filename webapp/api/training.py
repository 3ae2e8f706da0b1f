"""Training runs and model versions. Starting runs and changing the active model are for admins."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask_login import current_user

from db import training_runs, versions
from webapp.api.helpers import json_body, page_limit
from webapp.auth import admin_required
from webapp.database import get_db
from webapp.extensions import limiter
from webapp.presenters import run_dict, version_dict
from webapp.training import activate, cancel_training_run, owned_run, roll_back, start_training_run

bp = Blueprint("training", __name__)


def training_limit() -> str:
    return current_app.config["TRAINING_RATE_LIMIT"]


@bp.post("/training-runs")
@admin_required
@limiter.shared_limit(training_limit, scope="training")
def start_run():
    run = start_training_run(json_body(), current_user.id)
    return jsonify(run_dict(run)), 202, {"Location": run_dict(run)["url"]}


@bp.get("/training-runs")
@admin_required
def list_runs():
    runs = training_runs.list_runs(get_db(), limit=page_limit(default=50, maximum=200))
    return jsonify(training_runs=[run_dict(r, with_history=False) for r in runs])


@bp.get("/training-runs/<int:run_id>")
@admin_required
def show_run(run_id: int):
    return jsonify(run_dict(owned_run(run_id)))


@bp.post("/training-runs/<int:run_id>/cancel")
@admin_required
def cancel_run(run_id: int):
    return jsonify(run_dict(cancel_training_run(run_id))), 202


@bp.get("/models")
def list_models():
    session = get_db()
    status = versions.model_status(session, owner_id=None if current_user.is_admin else current_user.id)
    return jsonify(models=[version_dict(v) for v in versions.list_versions(session)], status=status.to_dict())


@bp.post("/models/<int:version_id>/activate")
@admin_required
def activate_model(version_id: int):
    return jsonify(version_dict(activate(version_id)))


@bp.post("/models/rollback")
@admin_required
def rollback_model():
    return jsonify(version_dict(roll_back()))
