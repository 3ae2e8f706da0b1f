"""Starting training runs and changing the active model: the checks shared by the page and the API."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from db import training_runs, versions
from db.models import ModelVersion, TrainingRun
from webapp.database import get_db
from webapp.errors import UserError
from webapp.queue import enqueue_training
from webapp.training_params import (
    ParamError,
    check_tasks_have_examples,
    check_topic_head,
    parse_training_request,
)


def start_training_run(data: dict[str, Any], user_id: int) -> TrainingRun:
    try:
        params = parse_training_request(data)
        check_tasks_have_examples(params, training_runs.corrected_tasks(get_db()) if params["include_feedback"]
                                  else set())
        head = active_topic_head()
        if head is not None:
            check_topic_head(params, *head)
    except ParamError as exc:
        raise UserError(400, "invalid_training_request", str(exc)) from None
    session = get_db()
    run = training_runs.create_run_unless_busy(session, params, created_by_id=user_id)
    if isinstance(run, int):
        session.rollback()  # ends the transaction and its lock
        raise UserError(409, "training_busy", f"Training run {run} is still queued or running; one run at a "
                        "time. Wait for it to finish, or cancel it first.")
    session.commit()
    enqueue_training(run.id)
    return run


def active_topic_head() -> tuple[str, list[str]] | None:
    """(name, topic labels) of the active version, from its labels.json; None when there is none or it cannot
    be read here (the training job checks again, against the model it loads)."""
    version = versions.active_version(get_db())
    if version is None:
        return None
    try:
        labels = json.loads((Path(version.path) / "labels.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    topics = labels.get("topic") if isinstance(labels, dict) else None
    return (version.name, [str(t) for t in topics]) if isinstance(topics, list) and topics else None


def owned_run(run_id: int) -> TrainingRun:
    run = training_runs.get_run(get_db(), run_id)
    if run is None:
        raise UserError(404, "not_found", f"Training run {run_id} does not exist. See the list of runs.")
    return run


def cancel_training_run(run_id: int) -> TrainingRun:
    session = get_db()
    owned_run(run_id)
    try:
        run = training_runs.request_cancel(session, run_id)
    except training_runs.RunError as exc:
        raise UserError(409, "cannot_cancel", str(exc).capitalize() + ".") from None
    session.commit()
    return run


def activate(version_id: int) -> ModelVersion:
    session = get_db()
    if session.get(ModelVersion, version_id) is None:
        raise UserError(404, "not_found", f"Model version {version_id} does not exist. See the list of models.")
    version = versions.activate_version(session, version_id)
    session.commit()
    return version


def roll_back() -> ModelVersion:
    session = get_db()
    try:
        version = versions.rollback(session)
    except versions.VersionError as exc:
        raise UserError(409, "cannot_roll_back", str(exc).capitalize() + ".") from None
    session.commit()
    return version
