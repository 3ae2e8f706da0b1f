"""Training runs and model versions. Starting runs and changing the active model are for admins."""
from __future__ import annotations

import json
import math
from typing import Any

from flask import Blueprint, current_app, jsonify
from flask_login import current_user

from db import training_runs, versions
from webapp.api.helpers import json_body, page_limit
from webapp.auth import admin_required
from webapp.database import get_db
from webapp.errors import UserError
from webapp.extensions import limiter
from webapp.presenters import run_dict, version_dict
from webapp.training import activate, cancel_training_run, owned_run, roll_back, start_training_run

bp = Blueprint("training", __name__)


def training_limit() -> str:
    return current_app.config["TRAINING_RATE_LIMIT"]


def _whole(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value) and value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _name_list(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


# The JSON type of each field of a TrainingRequest (see openapi.py). webapp/training_params.py, shared with
# the training page, reads form strings and so coerces ("3" and 1.5 become 3 and 1); a JSON client's value
# of the wrong type is refused here instead, naming the field.
REQUEST_TYPES: dict[str, tuple[Any, str]] = {
    "epochs": (_whole, "a whole number"),
    "learning_rate": (_number, "a number such as 0.0003"),
    "train.learning_rate": (_number, "a number such as 0.0003"),
    "datasets": (_name_list, "a list of dataset names"),
    "tasks": (_name_list, "a list of task names"),
    "train.tasks": (_name_list, "a list of task names"),
    "method": (lambda v: isinstance(v, str), "a string"),
    "train.mode": (lambda v: isinstance(v, str), "a string"),
    "recipe": (lambda v: isinstance(v, str), "a string"),
    "include_corrections": (lambda v: isinstance(v, bool), "true or false"),
    "include_feedback": (lambda v: isinstance(v, bool), "true or false"),
}


def check_request_types(data: dict[str, Any]) -> None:
    """400 for a known field of the wrong JSON type (null, and unknown fields, are left to
    parse_training_request, which names them)."""
    train = data.get("train")
    fields = list(data.items()) + [(f"train.{k}", v) for k, v in (train.items() if isinstance(train, dict) else [])]
    for name, value in fields:
        check = REQUEST_TYPES.get(name)
        if check is not None and value is not None and not check[0](value):
            raise UserError(400, "invalid_training_request", f"{name} must be {check[1]}, not {json.dumps(value)[:60]}.")


@bp.post("/training-runs")
@admin_required
# only a run that starts counts against the limit: a refused request (400, 409) costs nothing
@limiter.shared_limit(training_limit, scope="training", deduct_when=lambda response: response.status_code == 202)
def start_run():
    data = json_body()
    check_request_types(data)
    run = start_training_run(data, current_user.id)
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
