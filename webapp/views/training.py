"""The training page (admins): start runs, watch them, compare versions, activate or roll back."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from db import training_runs, versions
from db.models import ModelVersion
from webapp.auth import admin_required
from webapp.charts import learning_rate_chart, loss_chart, metric_table
from webapp.database import get_db
from webapp.errors import UserError
from webapp.extensions import limiter
from webapp.forms import ActionForm, TrainingForm
from webapp.training import (
    activate,
    active_topic_head,
    cancel_training_run,
    owned_run,
    roll_back,
    start_training_run,
)
from webapp.training_params import (
    DATASETS,
    DEFAULT_LEARNING_RATE,
    METHODS,
    TASKS,
    dataset_name,
    topic_mismatch_words,
    topic_mismatches,
)

bp = Blueprint("training", __name__, url_prefix="/training")

# the names the form uses, for the runs table and a run's settings (they showed the keys: ag_news, lora)
WORDS = {"dataset_names": {key: dataset_name(key) for key in DATASETS}, "task_names": TASKS,
         "method_names": {"lora": "LoRA", "full": "Full fine-tune"}}

COMPARED_VERSIONS = 6


def training_limit() -> str:
    return current_app.config["TRAINING_RATE_LIMIT"]


def _page(form: TrainingForm | None = None, status: int = 200):
    session = get_db()
    runs = training_runs.list_runs(session, limit=30)
    all_versions = versions.list_versions(session)
    compared = all_versions[:COMPARED_VERSIONS]
    # the page offers Roll back only when there is a version to go back to, and names it
    rollback_to = versions.rollback_target(session, next((v for v in all_versions if v.is_active), None))
    live = next((r for r in runs if r.state in training_runs.ACTIVE_STATES), None)
    head = active_topic_head()
    mismatched = [] if head is None else topic_mismatches(list(DATASETS), head[1])
    topic_warnings = [f"{topic_mismatch_words(name, *head)}: choose it only without the Topic task."
                      for name in mismatched]
    if form is None:
        form = TrainingForm(formdata=None)
        # the form as it first shows must start a run: with every task ticked, a dataset the active topic head
        # refuses would turn the first click into an error
        form.datasets.data = [name for name in DATASETS if name not in mismatched]
    return render_template(
        "training.html", form=form, action_form=ActionForm(), runs=runs,
        live=live, versions=all_versions, compared=compared, rollback_to=rollback_to,
        metric_rows=metric_table([v.metrics or {} for v in compared]), headers=[v.name for v in compared],
        datasets=DATASETS, tasks=TASKS, methods=METHODS, default_lr=DEFAULT_LEARNING_RATE,
        topic_warnings=topic_warnings, **WORDS,
    ), status


@bp.get("")
@admin_required
def index():
    return _page()


@bp.post("/runs")
@admin_required
@limiter.shared_limit(training_limit, scope="training", deduct_when=lambda response: response.status_code == 303)
def start():
    form = TrainingForm()
    if not form.validate():
        flash("Check the form: " + "; ".join(f"{name}: {', '.join(errors)}" for name, errors in form.errors.items()),
              "error")
        return _page(form, 400)
    try:
        run = start_training_run({
            "datasets": form.datasets.data or [], "tasks": form.tasks.data or [], "epochs": form.epochs.data,
            "learning_rate": float(form.learning_rate.data) if form.learning_rate.data is not None else None,
            "method": form.method.data, "include_corrections": bool(form.include_corrections.data),
        }, current_user.id)
    except UserError as exc:
        flash(exc.message, "error")
        return _page(form, exc.status)
    # no state in the words: the message stays on the page while the badge below goes queued -> running -> done
    flash(f"Training run {run.id} is created: it runs as soon as a training worker is free, and this page "
          "follows it.", "info")
    return redirect(url_for("training.run", run_id=run.id), code=303)


@bp.get("/runs/<int:run_id>")
@admin_required
def run(run_id: int):
    training_run = owned_run(run_id)
    session = get_db()
    version = session.get(ModelVersion, training_run.model_version_id) if training_run.model_version_id else None
    active = versions.active_version(session)
    columns = [("this run", training_run.metrics or {})]
    if active is not None:
        columns.append((f"{active.name} (active)", active.metrics or {}))
    if version is not None and (active is None or version.id != active.id):
        columns.append((f"{version.name} (from this run)", version.metrics or {}))
    return render_template(
        "run.html", run=training_run, chart=loss_chart(training_run.history or []), version=version,
        lr_chart=learning_rate_chart(training_run.history or []),
        headers=[name for name, _ in columns], metric_rows=metric_table([metrics for _, metrics in columns]),
        action_form=ActionForm(), methods=METHODS, **WORDS,
    )


@bp.get("/runs/<int:run_id>/chart")
@admin_required
def run_chart(run_id: int):
    """The loss chart alone, for the run page's script to refresh while the run goes."""
    return render_template("_loss_chart.html", chart=loss_chart(owned_run(run_id).history or []))


def _refused(exc: UserError, back_to: str):
    """A button whose action cannot be done now (nothing to roll back to, a run already over): back to the
    page it was on, saying why, rather than a bare error page whose links lead elsewhere."""
    flash(exc.message, "error")
    return redirect(back_to, code=303)


@bp.post("/runs/<int:run_id>/cancel")
@admin_required
def cancel(run_id: int):
    try:
        run = cancel_training_run(run_id)
    except UserError as exc:
        return _refused(exc, url_for("training.run", run_id=run_id))
    flash(f"Training run {run.id} " + ("is cancelled." if run.state == "cancelled" else "stops at its next step."),
          "info")
    return redirect(url_for("training.run", run_id=run.id), code=303)


@bp.post("/models/<int:version_id>/activate")
@admin_required
def activate_version(version_id: int):
    try:
        version = activate(version_id)
    except UserError as exc:
        return _refused(exc, url_for("training.index", _anchor="versions"))
    flash(f"Model {version.name} is now active. Workers switch to it between batches.", "info")
    return redirect(url_for("training.index", _anchor="versions"), code=303)


@bp.post("/models/rollback")
@admin_required
def rollback():
    try:
        version = roll_back()
    except UserError as exc:
        return _refused(exc, url_for("training.index", _anchor="versions"))
    flash(f"Rolled back: model {version.name} is active again.", "info")
    return redirect(url_for("training.index", _anchor="versions"), code=303)
