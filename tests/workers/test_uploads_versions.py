"""Uploads, job progress, model versions and what happens while no model exists."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from db.jobs import job_progress
from db.models import Blob, DocState, Document, TrainingRun
from db.session import session_scope
from db.training_runs import update_progress
from db.uploads import UploadedFile, UploadRejected, clean_filename, create_job
from db.versions import (
    VersionError,
    activate_version,
    active_version,
    model_status,
    register_version,
    rollback,
)
from workers.model_resolution import ensure_model


def test_upload_stores_each_content_once_per_owner(clean_db, make_user):
    alice, bob = make_user("alice@example.com"), make_user("bob@example.com")
    same = b"identical bytes"
    with session_scope(clean_db) as session:
        job, docs = create_job(
            session,
            alice,
            [UploadedFile("a.txt", same), UploadedFile("../../b.txt", same), UploadedFile("c.md", b"other")],
        )
        create_job(session, alice, [UploadedFile("again.txt", same)])
        create_job(session, bob, [UploadedFile("bob.txt", same)])
    assert [d.filename for d in docs] == ["a.txt", "b.txt", "c.md"]
    assert docs[0].blob_id == docs[1].blob_id != docs[2].blob_id
    assert all(d.state == DocState.UPLOADED.value and d.wakeup_sent_at is not None for d in docs)
    assert docs[2].content_type == "text/markdown"
    with session_scope(clean_db) as session:
        assert session.scalar(select(func.count()).select_from(Blob)) == 3  # alice: 2 contents, bob: 1


def test_upload_limits_are_specific(clean_db, make_user):
    owner = make_user()
    with session_scope(clean_db) as session:
        with pytest.raises(UploadRejected) as none:
            create_job(session, owner, [])
        with pytest.raises(UploadRejected) as big:
            create_job(session, owner, [UploadedFile("big.pdf", b"x" * 11)], max_bytes=10)
        with pytest.raises(UploadRejected) as many:
            create_job(session, owner, [UploadedFile(f"{i}.txt", b"x") for i in range(3)], max_files=2)
    assert (none.value.code, big.value.code, many.value.code) == (
        "no_files",
        "file_too_large",
        "too_many_files",
    )
    assert "big.pdf" in big.value.message and "limit is 2" in many.value.message


def test_clean_filename():
    assert clean_filename("C:\\Users\\me\\report.pdf") == "report.pdf"
    assert clean_filename("") == "unnamed"
    long = clean_filename("x" * 400 + ".docx")
    assert len(long) == 255 and long.endswith(".docx")


def test_job_progress(clean_db, queue_texts):
    ids = queue_texts(["a", "b", "c"])
    with session_scope(clean_db) as session:
        job_id = session.get(Document, ids[0]).job_id
        assert job_progress(session, job_id).state == "processing"
        for doc_id, state in zip(ids, ["done", "failed", "done"], strict=True):
            session.get(Document, doc_id).state = state
        session.flush()
        progress = job_progress(session, job_id)
    assert (progress.total, progress.done, progress.failed, progress.state) == (3, 2, 1, "partial")


def test_one_active_version_and_rollback(clean_db):
    with session_scope(clean_db) as session:
        v1 = register_version(session, path="/m/v1", source="base", activate=True)
        v2 = register_version(session, path="/m/v2", source="trained")
        assert (v1.name, v2.name) == ("v1", "v2")
        activate_version(session, v2.id)
        assert active_version(session).id == v2.id
        assert rollback(session).id == v1.id
        assert active_version(session).id == v1.id
        assert session.scalar(select(func.count()).where(Document.id < 0)) == 0
    with session_scope(clean_db) as session, pytest.raises(VersionError):
        activate_version(session, 999)


def test_rollback_steps_back_through_activations_instead_of_toggling(clean_db):
    """v1 -> v2 -> v3, then rollback, rollback: v2, then v1 (it used to go back to v3: re-activating v2
    had made v3 the 'previous' one), and a third has nothing left to undo."""
    ids = []
    for name in ("v1", "v2", "v3"):
        with session_scope(clean_db) as session:  # one transaction each: now() differs
            ids.append(register_version(session, path=f"/m/{name}", source="trained", activate=True).id)
    steps = []
    for _ in range(2):
        with session_scope(clean_db) as session:
            steps.append(rollback(session).name)
    assert steps == ["v2", "v1"]
    with session_scope(clean_db) as session, pytest.raises(VersionError, match="no previously active"):
        rollback(session)
    with session_scope(clean_db) as session:
        assert active_version(session).id == ids[0]


def test_model_status_while_no_model(clean_db, queue_texts):
    queue_texts(["waiting"])
    with session_scope(clean_db) as session:
        assert model_status(session).state == "waiting"
        run = TrainingRun(params={"recipe": "starter"}, progress={"step": 30, "total_steps": 120})
        session.add(run)
        session.flush()
        status = model_status(session)
        assert status.state == "training" and status.progress_pct == 25.0 and status.waiting_documents == 1
        assert "starter training run" in status.message and "25%" in status.message
        update_progress(session, run.id, {"step": 60, "total_steps": 120})
        assert model_status(session).progress_pct == 50.0
        register_version(session, path="/m/v1", source="starter", activate=True)
        assert model_status(session).to_dict()["state"] == "ready"


def test_model_status_counts_only_the_readers_waiting_documents(clean_db, queue_texts, make_user):
    """People see how many of their own documents wait, not how busy everyone else is; admins see all."""
    ada, bob = make_user("ada@example.com"), make_user("bob@example.com")
    queue_texts(["one", "two"], ada)
    queue_texts(["three"], bob)
    with session_scope(clean_db) as session:
        session.add(TrainingRun(params={"recipe": "starter"}, progress={"step": 1, "total_steps": 4}))
        session.flush()
        mine, theirs, everyone = (model_status(session, owner_id=o) for o in (ada, bob, None))
    assert (mine.waiting_documents, theirs.waiting_documents, everyone.waiting_documents) == (2, 1, 3)
    assert "2 of your documents wait" in mine.message and "3" not in mine.message.split("%")[-1]
    assert "3 documents wait" in everyone.message


class RecordingCelery:
    def __init__(self):
        self.sent = []

    class conf:  # noqa: N801
        broker_url = "memory://"

    def send_task(self, name, args=None, **kwargs):
        self.sent.append((name, args))


def test_without_base_model_a_starter_run_is_enqueued_once(settings, monkeypatch, tmp_path):
    settings.base_model = str(tmp_path / "missing-checkpoint")
    settings.models_dir = tmp_path / "models"
    celery = RecordingCelery()
    assert ensure_model(settings.database_url, settings, celery) is None
    assert ensure_model(settings.database_url, settings, celery) is None
    with session_scope(settings.database_url) as session:
        runs = session.scalars(select(TrainingRun)).all()
    assert len(runs) == 1 and runs[0].params["recipe"] == "starter"
    assert "missing-checkpoint" in runs[0].params["reason"]
    assert celery.sent == [("leximind.run_training", [runs[0].id])]


def test_an_artifact_folder_as_base_model_becomes_the_first_version(settings, artifacts_dir):
    from model.artifacts import create_random_artifact

    folder = artifacts_dir / "workers-base-tiny"
    if not folder.exists():
        create_random_artifact(folder, size="tiny")
    settings.base_model = str(folder)
    version = ensure_model(settings.database_url, settings, RecordingCelery())
    assert version is not None and version.is_active and version.path == str(folder.resolve())
    assert version.source == "import" and version.manifest_sha256
