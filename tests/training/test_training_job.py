"""The training job against the real database: queued -> running -> succeeded (or cancelled)."""
from __future__ import annotations

import threading
import time

from db.models import ModelVersion, RunState, TrainingRun
from db.session import session_scope
from db.training_runs import create_run, request_cancel
from db.versions import active_version
from leximind.config import Settings
from model.artifacts import load_artifact, manifest_sha256
from workers.training_job import run_training_run


def _settings(clean_db, tmp_path) -> Settings:
    return Settings(database_url=clean_db, data_dir=tmp_path / "data", models_dir=tmp_path / "models")


def _run(clean_db, run_id) -> TrainingRun:
    with session_scope(clean_db) as session:
        run = session.get(TrainingRun, run_id)
        session.expunge(run)
        return run


def test_a_run_goes_to_succeeded_with_progress_and_registers_an_active_version(clean_db, tmp_path, tiny_params):
    with session_scope(clean_db) as session:
        run_id = create_run(session, tiny_params).id
    run_training_run(clean_db, run_id, _settings(clean_db, tmp_path), device="cpu", progress_interval_s=0.0)

    run = _run(clean_db, run_id)
    assert run.state == RunState.SUCCEEDED.value, run.error_message
    assert run.started_at and run.finished_at and run.heartbeat_at and run.worker
    assert run.progress["step"] == run.progress["total_steps"] == 6 and run.progress["phase"] == "succeeded"
    assert [point["step"] for point in run.history if "loss" in point][:3] == [1, 2, 3]
    for point in (p for p in run.history if "loss" in p):  # the running average over tasks, and each task's
        assert abs(point["loss"] - sum(point["task_losses"].values()) / len(point["task_losses"])) < 1e-4
    assert run.metrics["comparison"]["activated"] is True and "test" in run.metrics
    with session_scope(clean_db) as session:
        version = active_version(session)
        assert version is not None and version.id == run.model_version_id
        assert version.training_run_id == run_id and version.source == "starter"
        assert version.manifest_sha256 == manifest_sha256(version.path)
        first_path, first_id = version.path, version.id
    assert load_artifact(first_path).manifest["training_run_id"] == run_id
    assert not (tmp_path / "data" / "training" / f"run-{run_id}").exists()  # checkpoints cleaned up

    # a fine-tuning run starts from the active version, learns from corrections, and is compared with it
    tiny_params = {**tiny_params, "recipe": "finetune", "train": {**tiny_params["train"], "max_steps": 2}}
    tiny_params.pop("model")
    with session_scope(clean_db) as session:
        second_id = create_run(session, tiny_params).id
    # progress writes held back by the interval: the last step is still what a finished run shows
    run_training_run(clean_db, second_id, _settings(clean_db, tmp_path), device="cpu", progress_interval_s=3600.0)
    second = _run(clean_db, second_id)
    assert second.state == RunState.SUCCEEDED.value, second.error_message
    assert second.progress["step"] == second.progress["total_steps"] == 2 and second.progress["phase"] == "succeeded"
    comparison = second.metrics["comparison"]
    assert comparison["active_version"] == "v1" and comparison["active_score"] is not None
    with session_scope(clean_db) as session:
        new = session.get(ModelVersion, second.model_version_id)
        assert new.parent_id == first_id and new.name == "v2"
        assert new.is_active is comparison["activated"]
    assert load_artifact(new.path).manifest["parent"] == "v1"


def test_a_running_run_can_be_cancelled(clean_db, tmp_path, tiny_params):
    tiny_params["train"].update(max_steps=100_000, eval_every=0)
    with session_scope(clean_db) as session:
        run_id = create_run(session, tiny_params).id
    worker = threading.Thread(
        target=run_training_run, args=(clean_db, run_id, _settings(clean_db, tmp_path)),
        kwargs={"device": "cpu", "progress_interval_s": 0.0},
    )
    worker.start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (_run(clean_db, run_id).progress or {}).get("step", 0) < 2:
        time.sleep(0.2)
    with session_scope(clean_db) as session:
        request_cancel(session, run_id)
    worker.join(timeout=60)
    assert not worker.is_alive()
    run = _run(clean_db, run_id)
    assert run.state == RunState.CANCELLED.value and "cancelled" in run.error_message
    assert run.model_version_id is None
    with session_scope(clean_db) as session:
        assert session.query(ModelVersion).count() == 0


def test_a_queued_run_cancelled_never_starts_and_bad_params_fail_with_a_reason(clean_db, tmp_path, tiny_params):
    with session_scope(clean_db) as session:
        queued = create_run(session, tiny_params).id
        request_cancel(session, queued)
        bad = create_run(session, {"recipe": "starter", "train": {"max_stepz": 3}}).id
    settings = _settings(clean_db, tmp_path)
    run_training_run(clean_db, queued, settings, device="cpu")
    assert _run(clean_db, queued).state == RunState.CANCELLED.value
    run_training_run(clean_db, bad, settings, device="cpu")
    failed = _run(clean_db, bad)
    assert failed.state == RunState.FAILED.value and "max_stepz" in failed.error_message


def test_corrections_in_the_feedback_table_become_training_examples(clean_db, tmp_path, tiny_params):
    from db.models import Feedback, User
    from db.training_runs import corrections
    from db.uploads import UploadedFile, create_job

    text = "The minister announced a new budget for schools and hospitals today."
    with session_scope(clean_db) as session:
        user = User(email="ed@example.com", password_hash="x", role="admin")
        session.add(user)
        session.flush()
        _, (document,) = create_job(session, user.id, [UploadedFile("note.txt", text.encode())])
        document.text = text
        session.add_all([
            Feedback(document_id=document.id, user_id=user.id, topic_label="business"),
            Feedback(document_id=document.id, user_id=user.id, topic_label="politics", emotion_labels=["approval"]),
        ])
        session.flush()
        rows = corrections(session)
        run_id = create_run(session, tiny_params).id
    assert [(r["topic"], r["emotions"]) for r in rows] == [("business", None), ("politics", ["approval"])]

    run_training_run(clean_db, run_id, _settings(clean_db, tmp_path), device="cpu", progress_interval_s=0.0)
    run = _run(clean_db, run_id)
    assert run.state == RunState.SUCCEEDED.value, run.error_message
    sources = {name: split["sources"] for name, split in run.metrics["data"].items()}
    assert sum(s.get("feedback", 0) for s in sources.values()) == 1  # two corrections, one document


def test_two_requests_at_once_create_one_run(clean_db, tiny_params):
    """The busy check and the insert hold an advisory lock: a second request waits for the first to commit,
    then sees its run (without the lock it saw no run and created a second one)."""
    from db.session import get_sessionmaker
    from db.training_runs import create_run_unless_busy

    factory = get_sessionmaker(clean_db)
    first = factory()
    created = create_run_unless_busy(first, tiny_params)
    assert isinstance(created, TrainingRun)
    answer: list = []
    second = threading.Thread(target=lambda: answer.append(_in_own_session(factory, tiny_params)))
    second.start()
    second.join(timeout=1.0)
    assert second.is_alive() and not answer  # waiting for the first transaction's lock
    first.commit()
    second.join(timeout=10)
    assert answer == [created.id]
    first.close()


def _in_own_session(factory, params):
    from db.training_runs import create_run_unless_busy

    with factory() as session:
        result = create_run_unless_busy(session, params)
        session.rollback()
        return result if isinstance(result, int) else "created another run"
