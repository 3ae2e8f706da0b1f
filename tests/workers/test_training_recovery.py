"""Training runs whose worker died, and the starter run restarted with a bounded backoff."""

from __future__ import annotations

import time

from sqlalchemy import func, select, text, update

from db.models import RunState, TrainingRun
from db.session import session_scope
from db.training_runs import finish_run, get_run, start_run, update_progress
from db.versions import model_status
from tests.workers.test_uploads_versions import RecordingCelery
from workers.model_resolution import ensure_model
from workers.sweeper import sweep
from workers.training_job import RunHeartbeat


def age(url: str, run_id: int, column: str, seconds: int) -> None:
    with session_scope(url) as session:
        session.execute(
            update(TrainingRun)
            .where(TrainingRun.id == run_id)
            .values({column: func.now() - text(f"interval '{seconds} seconds'")})
        )


def starter_runs(url: str) -> list[TrainingRun]:
    with session_scope(url) as session:
        return list(session.scalars(select(TrainingRun).order_by(TrainingRun.id)))


def fail(url: str, run_id: int, message: str = "RuntimeError: out of disk") -> None:
    with session_scope(url) as session:
        start_run(session, run_id, "trainer:1")
        finish_run(session, run_id, RunState.FAILED.value, error_message=message)


def test_the_sweeper_fails_a_running_run_whose_heartbeat_stopped(settings, tuning):
    with session_scope(settings.database_url) as session:
        dead = TrainingRun(params={"recipe": "finetune"}, state=RunState.QUEUED.value)
        alive = TrainingRun(params={"recipe": "finetune"}, state=RunState.QUEUED.value)
        session.add_all([dead, alive])
        session.flush()
        dead_id, alive_id = dead.id, alive.id
        start_run(session, dead_id, "gpu-host:4242")
        update_progress(session, dead_id, {"phase": "train", "step": 40, "total_steps": 100})
    with session_scope(settings.database_url) as session:
        session.get(TrainingRun, alive_id).state = RunState.RUNNING.value  # two can't start; a fresh beat
        session.get(TrainingRun, alive_id).heartbeat_at = func.now()
    age(settings.database_url, dead_id, "heartbeat_at", int(tuning.training_stale_s) + 5)

    counts = sweep(settings.database_url, RecordingCelery(), settings=settings, tuning=tuning)
    assert counts.training_runs_lost == [dead_id]
    with session_scope(settings.database_url) as session:
        run, other = get_run(session, dead_id), get_run(session, alive_id)
        assert run.state == RunState.FAILED.value and run.finished_at is not None
        assert "gpu-host:4242" in run.error_message and "heartbeat" in run.error_message
        assert "phase train" in run.error_message
        assert other.state == RunState.RUNNING.value
        # the worker was only stalled and comes back: it is told to stop, and the verdict stands
        assert update_progress(session, dead_id, {"step": 41}) is True
        finish_run(session, dead_id, RunState.SUCCEEDED.value)
        assert get_run(session, dead_id).state == RunState.FAILED.value
    assert (
        sweep(settings.database_url, RecordingCelery(), settings=settings, tuning=tuning).training_runs_lost
        == []
    )


def test_a_live_run_keeps_its_heartbeat_fresh_between_progress_writes(settings, tuning):
    with session_scope(settings.database_url) as session:
        run = TrainingRun(params={"recipe": "finetune"}, state=RunState.QUEUED.value)
        session.add(run)
        session.flush()
        run_id = run.id
        start_run(session, run_id, "gpu-host:1")
    age(settings.database_url, run_id, "heartbeat_at", 3600)  # a long phase without progress callbacks
    with RunHeartbeat(settings.database_url, run_id, interval_s=0.1):
        time.sleep(0.5)
    tuning.training_stale_s = 60.0
    assert (
        sweep(settings.database_url, RecordingCelery(), settings=settings, tuning=tuning).training_runs_lost
        == []
    )
    with session_scope(settings.database_url) as session:
        assert get_run(session, run_id).state == RunState.RUNNING.value


def test_a_failed_starter_run_restarts_with_backoff_a_bounded_number_of_times(settings, tuning, tmp_path):
    settings.base_model = str(tmp_path / "no-checkpoint-here")
    settings.models_dir = tmp_path / "models"
    tuning.starter_tries, tuning.starter_retry_base_s = 3, 60.0
    celery = RecordingCelery()
    url = settings.database_url
    assert ensure_model(url, settings, celery, tuning) is None
    [first] = starter_runs(url)
    assert (first.params["try"], first.params["max_tries"], first.params["retry_after_s"]) == (1, 3, 60.0)

    fail(url, first.id)
    # not yet due: neither the infer task nor the sweeper starts it again; the status says when
    assert ensure_model(url, settings, celery, tuning) is None
    assert sweep(url, celery, settings=settings, tuning=tuning).starter_restarted is None
    assert len(starter_runs(url)) == 1
    with session_scope(url) as session:
        status = model_status(session)
    assert status.state == "waiting" and "out of disk" in status.message
    assert "start it again within 60 s" in status.message and "try 2 of 3" in status.message

    age(url, first.id, "finished_at", 61)
    second_id = sweep(url, celery, settings=settings, tuning=tuning).starter_restarted
    second = starter_runs(url)[-1]
    assert second.id == second_id and second.params["try"] == 2 and second.params["retry_after_s"] == 120.0
    assert f"starter run {first.id} failed" in second.params["reason"]
    assert celery.sent[-1] == ("leximind.run_training", [second_id])
    assert (
        sweep(url, celery, settings=settings, tuning=tuning).starter_restarted is None
    )  # queued: nothing to do
    with session_scope(url) as session:
        assert model_status(session).state == "training" and "(try 2 of 3)" in model_status(session).message

    fail(url, second_id)
    age(url, second_id, "finished_at", 61)
    assert ensure_model(url, settings, celery, tuning) is None
    assert len(starter_runs(url)) == 2  # the second wait is twice as long
    age(url, second_id, "finished_at", 121)
    assert ensure_model(url, settings, celery, tuning) is None  # the infer task restarts it too
    third = starter_runs(url)[-1]
    assert third.params["try"] == 3
    # the infer task looked for the base model again before it restarted the run
    assert f"starter run {second_id} failed" in third.params["reason"]
    assert "no-checkpoint-here" in third.params["reason"]

    fail(url, third.id)
    age(url, third.id, "finished_at", 3600)
    assert sweep(url, celery, settings=settings, tuning=tuning).starter_restarted is None
    assert ensure_model(url, settings, celery, tuning) is None
    assert len(starter_runs(url)) == 3  # three tries in all, then an admin decides
    with session_scope(url) as session:
        status = model_status(session)
    assert status.state == "failed" and "after 3 tries" in status.message


def test_a_dead_starter_run_is_failed_by_the_sweeper_and_started_again(settings, tuning, tmp_path):
    settings.base_model = str(tmp_path / "no-checkpoint-here")
    tuning.starter_retry_base_s = 0.0
    celery = RecordingCelery()
    url = settings.database_url
    ensure_model(url, settings, celery, tuning)
    [first] = starter_runs(url)
    with session_scope(url) as session:
        start_run(session, first.id, "gpu-host:7")
    age(url, first.id, "heartbeat_at", int(tuning.training_stale_s) + 5)
    counts = sweep(url, celery, settings=settings, tuning=tuning)
    assert counts.training_runs_lost == [first.id] and counts.starter_restarted is not None
    assert [r.state for r in starter_runs(url)] == [RunState.FAILED.value, RunState.QUEUED.value]


def test_a_cancelled_starter_run_is_not_restarted(settings, tuning, tmp_path):
    settings.base_model = str(tmp_path / "no-checkpoint-here")
    tuning.starter_retry_base_s = 0.0
    celery = RecordingCelery()
    ensure_model(settings.database_url, settings, celery, tuning)
    [run] = starter_runs(settings.database_url)
    from db.training_runs import request_cancel

    with session_scope(settings.database_url) as session:
        request_cancel(session, run.id)
    assert sweep(settings.database_url, celery, settings=settings, tuning=tuning).starter_restarted is None
    assert ensure_model(settings.database_url, settings, celery, tuning) is None
    assert len(starter_runs(settings.database_url)) == 1


def test_after_the_starter_tries_a_base_model_folder_set_later_is_imported(settings, tuning, tmp_path):
    """The failed status tells an admin to set LEXIMIND_BASE_MODEL to a folder; once that folder is there,
    the next infer wake-up imports it (and a folder that does not load is not retried at every wake-up)."""
    from model.artifacts import create_random_artifact
    from workers import model_resolution

    settings.base_model = str(tmp_path / "not-there-yet")
    settings.models_dir = tmp_path / "models"
    tuning.starter_tries = 1
    celery = RecordingCelery()
    url = settings.database_url
    assert ensure_model(url, settings, celery, tuning) is None
    [run] = starter_runs(url)
    fail(url, run.id)
    age(url, run.id, "finished_at", 3600)
    assert ensure_model(url, settings, celery, tuning) is None
    with session_scope(url) as session:
        assert model_status(session).state == "failed"

    broken = tmp_path / "broken"
    broken.mkdir()
    settings.base_model = str(broken)
    model_resolution._BASE_FAILED_AT.clear()
    assert ensure_model(url, settings, celery, tuning) is None  # an empty folder does not load ...
    assert str(broken) in model_resolution._BASE_FAILED_AT  # ... and is not tried again at once
    assert ensure_model(url, settings, celery, tuning) is None
    assert len(starter_runs(url)) == 1 and len(celery.sent) == 1  # no new starter run either way

    create_random_artifact(tmp_path / "base", size="tiny")
    settings.base_model = str(tmp_path / "base")
    version = ensure_model(url, settings, celery, tuning)
    assert version is not None and version.source == "import"
    with session_scope(url) as session:
        assert model_status(session).state == "ready"
    assert len(starter_runs(url)) == 1
