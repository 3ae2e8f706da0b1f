"""The training job: one training-run row from queued to succeeded, failed or cancelled.

The Celery task ``leximind.run_training`` calls :func:`run_training_run` with the run id. The run's
``params`` name a recipe and overrides (see ``model.training.run.spec_from_params``). The job adds what the
pure training code does not know about: the corrections people made, the active version to start from
and compare against, progress written to the row (with a heartbeat) and cancellation between steps, and
registration of the new version, which becomes active only if it does at least as well as the active one
on the same held-out split.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from db.models import RunState
from db.session import session_scope
from db.training_runs import RunError, corrections, finish_run, heartbeat_run, start_run, update_progress
from db.versions import active_version, headline_metrics, register_version
from leximind.config import Settings
from workers.lease import Heartbeat

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 2.0  # at most one progress write per this many seconds (evaluations always write)
# a background beat, whatever the phase (loading data, evaluating): the sweeper fails a run whose heartbeat is
# older than LEXIMIND_TRAINING_STALE_SECONDS (300 by default), so this leaves room for several missed beats
TRAINING_HEARTBEAT_S = 30.0


@dataclass
class ActiveInfo:
    id: int
    name: str
    path: str


class RunHeartbeat(Heartbeat):
    """Beats the run's heartbeat between progress writes, so a long phase does not look like a dead worker."""

    def __init__(self, database_url: str, run_id: int, interval_s: float = TRAINING_HEARTBEAT_S):
        super().__init__(interval_s, f"training-run-{run_id}-heartbeat")
        self.database_url, self.run_id = database_url, run_id

    def beat(self) -> None:
        with session_scope(self.database_url) as session:
            heartbeat_run(session, self.run_id)


class ProgressWriter:
    """The trainer's progress callback: writes progress and history to the run row, beats the heartbeat,
    and raises TrainingCancelled once someone has asked to cancel."""

    def __init__(self, database_url: str, run_id: int, interval_s: float):
        self.database_url, self.run_id, self.interval_s = database_url, run_id, interval_s
        self.pending: list[dict[str, Any]] = []
        self.last_write = 0.0
        self.unwritten: dict[str, Any] | None = None  # the newest progress a throttled call did not write

    def __call__(self, progress: Any) -> None:
        from model.training.trainer import TrainingCancelled

        # loss: the trainer's running average over tasks; task_losses: each task's, for per-task lines
        point = {"step": progress.step, "loss": round(progress.loss, 5), "lr": progress.learning_rate,
                 "task_losses": {t: round(v, 5) for t, v in progress.task_losses.items()}}
        if progress.dev_loss is not None:
            point["dev_loss"] = round(progress.dev_loss, 5)
        if progress.phase == "train" or progress.dev_loss is not None:
            self.pending.append(point)
        now = time.monotonic()
        if progress.phase == "train" and now - self.last_write < self.interval_s:
            self.unwritten = progress.to_dict()
            return
        with session_scope(self.database_url) as session:
            cancel = update_progress(session, self.run_id, progress.to_dict(), self.pending)
        self.pending, self.last_write, self.unwritten = [], now, None
        if cancel:
            raise TrainingCancelled(f"training run {self.run_id} was cancelled at step {progress.step}")

    def phase(self, name: str) -> None:
        """The run moved past training: the last steps' progress (which throttling may have held back: the
        run page then said step 100 of 106 for a finished run) is written with the new phase."""
        with session_scope(self.database_url) as session:
            update_progress(session, self.run_id, {**(self.unwritten or {}), "phase": name}, self.pending)
        self.pending, self.unwritten = [], None


def run_training_run(
    database_url: str,
    run_id: int,
    settings: Settings,
    *,
    device: str | None = None,
    progress_interval_s: float = PROGRESS_INTERVAL_S,
) -> None:
    """Run one training run to its end; the outcome (and any failure's reason) is recorded on the row."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    device = device or settings.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        with session_scope(database_url) as session:
            params = dict(start_run(session, run_id, worker).params or {})
    except RunError as exc:
        log.warning("not starting training run %d: %s", run_id, exc)
        return
    log.info("training run %d started on %s with %s", run_id, worker, params)
    writer = ProgressWriter(database_url, run_id, progress_interval_s)
    checkpoints = settings.data_dir / "training" / f"run-{run_id}"
    try:
        with RunHeartbeat(database_url, run_id):
            state, metrics, version_id, message = _train_and_register(
                database_url, run_id, params, settings, writer, checkpoints, device
            )
    except Exception as exc:  # noqa: BLE001 - every failure ends the run with its reason, and is logged
        from model.training.trainer import TrainingCancelled

        if isinstance(exc, TrainingCancelled):
            log.info("%s", exc)
            state, metrics, version_id, message = RunState.CANCELLED.value, None, None, str(exc)
        else:
            log.exception("training run %d failed", run_id)
            state, metrics, version_id = RunState.FAILED.value, None, None
            message = f"{type(exc).__name__}: {exc}"
    with session_scope(database_url) as session:
        finish_run(session, run_id, state, metrics=metrics, error_message=message, model_version_id=version_id)
    if state != RunState.FAILED.value:
        shutil.rmtree(checkpoints, ignore_errors=True)  # a failed run keeps its checkpoint to resume from
    log.info("training run %d ended %s%s", run_id, state, f" ({message})" if message else "")


def _train_and_register(
    database_url: str,
    run_id: int,
    params: dict[str, Any],
    settings: Settings,
    writer: ProgressWriter,
    checkpoints: Path,
    device: str,
) -> tuple[str, dict[str, Any], int, str | None]:
    from model.artifacts import manifest_sha256
    from model.training.data import examples_from_corrections
    from model.training.run import spec_from_params, train_version

    spec = spec_from_params(params)
    with session_scope(database_url) as session:
        version = active_version(session)
        active = ActiveInfo(version.id, version.name, version.path) if version is not None else None
        rows = corrections(session) if params.get("include_feedback", True) else []
    if spec.init == "active":
        spec.init = _starting_point(active, settings)
    extra = examples_from_corrections(rows)
    log.info("training run %d: %d corrections, starting from %s", run_id, len(extra), spec.init)

    folder = settings.models_dir / f"run-{run_id}-{uuid.uuid4().hex[:6]}"
    outcome = train_version(
        spec, folder, shared_root=settings.shared_data, extra_examples=extra, callback=writer,
        checkpoint_dir=checkpoints, device=device, parent=active.name if active else None,
        extra_manifest={"training_run_id": run_id}, on_phase=writer.phase,
    )
    writer.phase("comparing")
    comparison = _compare_with_active(active, outcome, spec, device)
    metrics = {**outcome.metrics, "comparison": comparison}
    source = "starter" if params.get("recipe") == "starter" else "trained"
    with session_scope(database_url) as session:
        registered = register_version(
            session, path=str(outcome.folder), source=source, parent_id=active.id if active else None,
            training_run_id=run_id, metrics=_version_metrics(metrics), manifest_sha256=manifest_sha256(outcome.folder),
            activate=comparison["activated"],
        )
        version_id, name = registered.id, registered.name
    note = None if comparison["activated"] else (
        f"registered as {name} but not activated: {comparison['reason']}; an admin can activate it")
    log.info("training run %d registered %s (%s)", run_id, name, "active" if comparison["activated"] else "inactive")
    return RunState.SUCCEEDED.value, metrics, version_id, note


def _starting_point(active: ActiveInfo | None, settings: Settings) -> str:
    if active is not None:
        return active.path
    base = Path(settings.base_model)
    if base.is_dir():
        return str(base)
    raise RuntimeError(
        "there is no active model version to fine-tune and LEXIMIND_BASE_MODEL is not a local folder; "
        "start a run with the starter recipe ({\"recipe\": \"starter\"}) or point LEXIMIND_BASE_MODEL at a checkpoint"
    )


def _compare_with_active(active: ActiveInfo | None, outcome: Any, spec: Any, device: str) -> dict[str, Any]:
    """Score the active version on the very same held-out rows (outcome.splits: the rows the new model's heads
    can be scored on) and over the tasks whose heads have the same labels in both; the new one wins ties.
    With no task in common the new version is not activated: its score would mean something else."""
    candidate = outcome.held_out
    if active is None:
        return {"active_version": None, "active_score": None, "candidate_score": candidate, "activated": True,
                "reason": "no active version"}
    from model.artifacts import ArtifactError, load_artifact
    from model.training.evaluation import comparable_tasks, evaluate, held_out_score

    try:
        artifact = load_artifact(active.path, device=device)
    except ArtifactError as exc:
        log.warning("the active version %s cannot be loaded (%s); the new version replaces it", active.name, exc)
        return {"active_version": active.name, "active_score": None, "candidate_score": candidate,
                "activated": candidate is not None, "reason": f"the active version does not load: {exc}"}
    tasks = comparable_tasks(outcome.model, artifact.model, spec.train.tasks)
    differing = sorted(set(spec.train.tasks) - set(tasks))
    scores = evaluate(artifact.model, artifact.tokenizer, outcome.splits["dev"], outcome.splits["test"],
                      spec.eval, tasks=tasks)
    scores.pop("emotion_thresholds", None)
    scores.pop("topic_temperature", None)
    active_score = held_out_score(scores, tasks)
    candidate = held_out_score(outcome.metrics["test"], tasks)
    comparison = {"active_version": active.name, "active_score": active_score, "candidate_score": candidate,
                  "compared_tasks": tasks, "labels_differ": differing}
    if candidate is None or active_score is None:
        reason = (f"no task to compare on: the {' and '.join(differing)} heads have other labels than "
                  f"{active.name}'s" if differing else "no held-out score to compare")
        return {**comparison, "activated": False, "reason": reason}
    activated = candidate >= active_score
    reason = (f"held-out score {candidate:.4f} over {', '.join(tasks)} is "
              f"{'at least' if activated else 'below'} the active {active.name}'s {active_score:.4f}")
    # training on some tasks moves the shared encoder (and decoder) under the others: a version replaces the
    # active one by itself only when every task the active one serves was compared
    unchecked = [task for task in _served_tasks(artifact.model) if task not in tasks]
    if activated and unchecked:
        activated = False
        reason += (f", but {active.name} also serves {' and '.join(unchecked)}, which this run did not "
                   "compare; an admin can activate it after checking those")
    return {**comparison, "activated": activated, "reason": reason, "unchecked_tasks": unchecked}


def _served_tasks(model: Any) -> list[str]:
    """What a version answers for: a summary always, topic and emotions when it has those heads."""
    return ["summary"] + [task for task, head in (("topic", model.topic_head), ("emotion", model.emotion_head))
                          if head is not None]


def _version_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """What the version row keeps: the headline numbers (the full report is the artifact's metrics.json)."""
    return {**headline_metrics(metrics), "comparison": metrics.get("comparison")}
