"""A model version whose artifact does not load: recorded, shown, and no spinning on the documents."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import func, select, text, update

from db.models import DocState, ModelVersion, Result
from db.session import session_scope
from db.versions import activate_version, model_status, register_version
from tests.workers.conftest import documents
from tests.workers.fakes import FakePredictor
from workers.inference import process_queue
from workers.runtime import PredictorCache, load_pipeline


class BrokenLoader:
    """Loads every version except those whose path is in ``broken``; counts each attempt."""

    def __init__(self, *broken: str):
        self.broken = set(broken)
        self.loads: list[str] = []

    def __call__(self, path: str, device: str) -> FakePredictor:
        self.loads.append(path)
        if path in self.broken:
            raise FileNotFoundError(f"[Errno 2] No such file or directory: '{path}/model.safetensors'")
        return FakePredictor(version=path.rsplit("/", 1)[-1])


def loop(settings, tuning, predictors):
    return process_queue(
        settings.database_url, predictors, settings=settings, tuning=tuning, worker_name="health-test"
    )


def version_row(url, version_id) -> ModelVersion:
    with session_scope(url) as session:
        return session.get(ModelVersion, version_id)


@pytest.fixture()
def good_then_broken(clean_db):
    with session_scope(clean_db) as session:
        good = register_version(session, path="/m/good", source="base", activate=True).id
        broken = register_version(session, path="/m/broken", source="trained", activate=True).id
    return good, broken


def test_an_unloadable_active_version_falls_back_to_the_previous_good_one(
    settings, tuning, queue_texts, make_user, good_then_broken
):
    good, broken = good_then_broken
    owner = make_user()
    ids = queue_texts(["first text", "second text"], owner)
    loader = BrokenLoader("/m/broken")
    report = loop(settings, tuning, PredictorCache("cpu", loader))
    assert report.done == 2 and not report.no_model
    assert loader.loads == ["/m/broken", "/m/good"]
    with session_scope(settings.database_url) as session:
        assert set(session.scalars(select(Result.model_version_id))) == {good}
        status = model_status(session)
    row = version_row(settings.database_url, broken)
    assert "FileNotFoundError" in row.load_error and row.load_failed_at is not None and row.is_active
    assert status.state == "degraded" and status.version == row.name and status.serving == "v1"
    assert "cannot load" in status.message and "model.safetensors" in status.message
    assert status.to_dict()["serving_version"] == "v1"
    assert all(d.attempts == 1 for d in documents(settings.database_url, ids).values())

    # within LEXIMIND_MODEL_RETRY_SECONDS the broken version is not tried again
    queue_texts(["third text"], owner)
    loader.loads.clear()
    assert loop(settings, tuning, PredictorCache("cpu", loader)).done == 1
    assert loader.loads == ["/m/good"]


def test_without_a_good_version_documents_wait_uncharged_and_the_load_is_not_retried_at_once(
    settings, tuning, queue_texts, clean_db
):
    with session_scope(clean_db) as session:
        only = register_version(session, path="/m/broken", source="trained", activate=True).id
    ids = queue_texts(["waiting for a model that loads"])
    loader = BrokenLoader("/m/broken")
    predictors = PredictorCache("cpu", loader)
    for _ in range(5):  # five wake-ups: one load attempt, no claim, no attempt charged
        report = loop(settings, tuning, predictors)
        assert report.no_model and report.claimed == 0
    assert loader.loads == ["/m/broken"]
    [doc] = documents(settings.database_url, ids).values()
    assert doc.state == DocState.QUEUED.value and doc.attempts == 0 and doc.lease_owner is None
    with session_scope(clean_db) as session:
        status = model_status(session)
    assert status.state == "failed" and status.waiting_documents == 1
    assert "no earlier version can stand in" in status.message

    # once the retry interval passed, the files are back: it loads, the failure is cleared, work resumes
    with session_scope(clean_db) as session:
        session.execute(update(ModelVersion).values(load_failed_at=func.now() - text("interval '1 hour'")))
    loader.broken.clear()
    assert loop(settings, tuning, predictors).done == 1
    assert version_row(clean_db, only).load_error is None
    with session_scope(clean_db) as session:
        ready = model_status(session)
    assert ready.state == "ready" and ready.to_dict()["serving_version"] == ready.version  # it serves itself


def test_activating_a_version_again_clears_its_load_failure(
    settings, tuning, queue_texts, make_user, good_then_broken
):
    good, broken = good_then_broken
    owner = make_user()
    loader = BrokenLoader("/m/broken")
    queue_texts(["one"], owner)
    loop(settings, tuning, PredictorCache("cpu", loader))
    assert version_row(settings.database_url, broken).load_error is not None
    loader.broken.clear()  # an admin fixed the files and activates it again: the workers load it at once
    with session_scope(settings.database_url) as session:
        activate_version(session, broken)
    assert version_row(settings.database_url, broken).load_error is None
    queue_texts(["two"], owner)
    assert loop(settings, tuning, PredictorCache("cpu", loader)).done == 1
    assert loader.loads[-1] == "/m/broken"


def test_a_corrupt_artifact_is_recorded_with_the_loaders_reason(
    settings, tuning, queue_texts, clean_db, artifacts_dir, tmp_path
):
    from model.artifacts import create_random_artifact

    source = artifacts_dir / "workers-base-tiny"
    if not source.exists():
        create_random_artifact(source, size="tiny")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(source, corrupt)
    (corrupt / "labels.json").write_text('{"topic": ["tampered"]}')  # no longer matches the manifest
    with session_scope(clean_db) as session:
        version_id = register_version(session, path=str(corrupt), source="trained", activate=True).id
    ids = queue_texts(["a document"])
    report = loop(settings, tuning, PredictorCache("cpu", load_pipeline))
    assert report.no_model and report.claimed == 0
    row = version_row(clean_db, version_id)
    assert row.load_error.startswith("ArtifactError") and "labels.json" in row.load_error
    assert documents(clean_db, ids)[ids[0]].state == DocState.QUEUED.value


def test_worker_summaries_ban_repeated_trigrams_unless_told_otherwise(monkeypatch, tmp_path):
    """The worker's pipeline bans repeated 3-grams (on the fast decoder); LEXIMIND_NO_REPEAT_NGRAM=0 gives
    plain greedy decoding, FLAN-T5's own output."""
    from model.artifacts import create_random_artifact
    from workers.runtime import pipeline_config

    monkeypatch.delenv("LEXIMIND_NO_REPEAT_NGRAM", raising=False)
    assert pipeline_config().no_repeat_ngram_size == 3
    pipeline = load_pipeline(str(create_random_artifact(tmp_path / "tiny", size="tiny", seed=0)), "cpu")
    assert pipeline.config.no_repeat_ngram_size == 3 and pipeline.decoder is not None
    monkeypatch.setenv("LEXIMIND_NO_REPEAT_NGRAM", "0")
    assert pipeline_config().no_repeat_ngram_size == 0


def test_worker_dtype_and_bad_settings_are_named(monkeypatch, tmp_path):
    """LEXIMIND_INFER_DTYPE=bfloat16 loads the weights in bf16 (unset: fp32 on a CPU); a setting the worker
    cannot use stops it with the variable's name, before any model version is loaded (and blamed)."""
    import torch

    from model.artifacts import create_random_artifact
    from workers.runtime import WorkerConfigError, init_process, pipeline_config

    folder = str(create_random_artifact(tmp_path / "tiny", size="tiny", seed=0))
    monkeypatch.delenv("LEXIMIND_INFER_DTYPE", raising=False)
    assert next(load_pipeline(folder, "cpu").model.parameters()).dtype == torch.float32
    monkeypatch.setenv("LEXIMIND_INFER_DTYPE", "bfloat16")
    pipeline = load_pipeline(folder, "cpu")
    assert next(pipeline.model.parameters()).dtype == torch.bfloat16
    assert pipeline.run(["Shares rose after the bank cut rates."])[0].summary is not None
    for var, value, words in [("LEXIMIND_INFER_DTYPE", "float16", "must be one of float32, bfloat16"),
                              ("LEXIMIND_TORCH_THREADS", "two", "must be a whole number of at least 1"),
                              ("LEXIMIND_PIPELINE_BATCH_ROWS", "0", "must be a whole number of at least 1"),
                              ("LEXIMIND_NO_REPEAT_NGRAM", "-1", "must be a whole number of at least 0")]:
        monkeypatch.setenv("LEXIMIND_INFER_DTYPE", "bfloat16")
        monkeypatch.setenv(var, value)
        with pytest.raises(WorkerConfigError, match=f"{var} {words}, got '{value}'"):
            pipeline_config()
        with pytest.raises(WorkerConfigError, match=var):
            init_process(None, load_model=True)
        monkeypatch.delenv(var)


def test_a_new_worker_process_tries_a_recently_failed_version_at_once(
    settings, tuning, queue_texts, make_user, good_then_broken
):
    """Within LEXIMIND_MODEL_RETRY_SECONDS the running workers leave a broken version alone; a restarted
    worker (fixed code, restored files) loads it at once and clears the failure, or records it again."""
    from db.versions import record_load_failure
    from workers.model_resolution import load_at_start

    good, broken = good_then_broken
    with session_scope(settings.database_url) as session:
        record_load_failure(session, broken, "ImportError: cannot import name 'x'")
    loader = BrokenLoader("/m/broken")
    version, _ = load_at_start(settings.database_url, PredictorCache("cpu", loader))
    assert version.id == good and loader.loads == ["/m/broken", "/m/good"]  # tried again, still broken
    loader.broken.clear()  # the fix is deployed, the worker restarts
    version, _ = load_at_start(settings.database_url, PredictorCache("cpu", loader))
    assert version.id == broken and version_row(settings.database_url, broken).load_error is None
    queue_texts(["served by the repaired version"], make_user())
    assert loop(settings, tuning, PredictorCache("cpu", loader)).done == 1
    assert loader.loads[-1] == "/m/broken"
