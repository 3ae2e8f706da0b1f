"""The inference loop, called directly against the real database with a fake predictor."""

from __future__ import annotations

from sqlalchemy import func, select, text, update

from db.leases import claim_queued
from db.models import DocState, Document, ModelVersion, Result
from db.outcomes import complete_documents
from db.session import session_scope
from db.versions import activate_version, model_status, register_version
from tests.workers.conftest import documents
from tests.workers.fakes import POISON, FakePredictor
from workers.inference import process_queue, result_values
from workers.sweeper import sweep


def run_loop(settings, tuning, predictor, **kwargs):
    return process_queue(
        settings.database_url,
        lambda version: predictor,
        settings=settings,
        tuning=tuning,
        worker_name="test-worker",
        **kwargs,
    )


def test_two_sessions_claim_disjoint_sets_with_skip_locked(settings, queue_texts):
    ids = queue_texts([f"document number {i}" for i in range(20)])
    with session_scope(settings.database_url) as first, session_scope(settings.database_url) as second:
        a = claim_queued(first, 8, "worker-a", 60)  # first's transaction still holds its row locks
        b = claim_queued(second, 8, "worker-b", 60)
    claimed_a, claimed_b = {d.id for d in a}, {d.id for d in b}
    assert len(claimed_a) == 8 and len(claimed_b) == 8
    assert not claimed_a & claimed_b
    docs = documents(settings.database_url, ids)
    assert sum(d.state == DocState.PROCESSING.value for d in docs.values()) == 16
    assert {d.lease_owner for d in docs.values() if d.id in claimed_a} == {"worker-a"}
    assert all(d.attempts == 0 for d in docs.values())  # a claim charges nothing; a run that starts does


def test_loop_processes_everything_in_length_buckets(settings, tuning, queue_texts, version_id):
    texts = [("word " * n).strip() for n in range(1, 41)]
    ids = queue_texts(texts)
    predictor = FakePredictor()
    report = run_loop(settings, tuning, predictor)
    assert report.done == 40 and report.failed == 0
    assert max(predictor.calls) <= tuning.infer_batch_docs
    docs = documents(settings.database_url, ids)
    assert {d.state for d in docs.values()} == {DocState.DONE.value}
    assert all(d.lease_owner is None and d.finished_at is not None for d in docs.values())
    with session_scope(settings.database_url) as session:
        results = session.scalars(select(Result)).all()
        assert len(results) == 40
        assert {r.model_version_id for r in results} == {version_id}
        assert all(r.summary.startswith("fake: word") for r in results)
        assert all(r.emotion_labels == ["neutral"] for r in results)


def test_stale_worker_cannot_write_after_its_lease_was_taken_over(settings, tuning, queue_texts, version_id):
    ids = queue_texts(["a stale lease", "another one"])
    with session_scope(settings.database_url) as session:
        stale = claim_queued(session, 10, "stale-worker/1", 60)
    assert {d.id for d in stale} == set(ids)
    with session_scope(settings.database_url) as session:  # the lease runs out while the worker hangs
        session.execute(update(Document).values(lease_expires_at=func.now() - text("interval '1 second'")))
    counts = sweep(settings.database_url, _NoCelery(), settings=settings, tuning=tuning)
    assert counts.requeued_processing == 2
    report = run_loop(settings, tuning, FakePredictor(version="fresh"))
    assert report.done == 2
    values = result_values(FakePredictor(version="stale").run(["x"])[0])
    with session_scope(settings.database_url) as session:
        written = complete_documents(session, "stale-worker/1", version_id, dict.fromkeys(ids, values))
    assert written == []
    with session_scope(settings.database_url) as session:
        summaries = session.scalars(select(Result.summary)).all()
    assert len(summaries) == 2 and all(s.startswith("fresh:") for s in summaries)


def test_bisection_fails_the_poison_document_alone(settings, tuning, queue_texts, version_id):
    texts = [f"ordinary text number {i}" for i in range(8)]
    texts[5] = f"this one is {POISON} for the model"
    ids = queue_texts(texts)
    predictor = FakePredictor()
    report = run_loop(settings, tuning, predictor)
    assert report.done == 7 and report.failed == 1
    docs = documents(settings.database_url, ids)
    poison = docs[ids[5]]
    assert poison.state == DocState.FAILED.value
    assert poison.error_code == "inference_error"
    assert "choked" in poison.error_message
    assert all(d.state == DocState.DONE.value for i, d in docs.items() if i != ids[5])
    # one batch of 8, then halves down to the culprit: 8 -> 4+4 -> 2+2 -> 1+1, and one probe text that
    # the model handles (so the fault is the document's)
    assert len(predictor.calls) <= 1 + 2 + 2 + 2 + 1


def test_transient_errors_back_off_then_fail_with_a_reason(settings, tuning, queue_texts, version_id):
    ids = queue_texts(["needs more memory than we have", "so does this"])
    predictor = FakePredictor(fail=lambda texts: MemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    tuning.retry_base_s = tuning.retry_max_s = 3600.0
    report = run_loop(settings, tuning, predictor)
    assert report.retried == 2 and report.failed == 0
    docs = documents(settings.database_url, ids)
    assert all(d.state == DocState.QUEUED.value and d.next_attempt_at is not None for d in docs.values())
    assert all(d.error_code == "inference_transient" for d in docs.values())
    assert run_loop(settings, tuning, predictor).claimed == 0  # backing off: not claimable yet

    with session_scope(settings.database_url) as session:
        session.execute(update(Document).values(next_attempt_at=func.now()))
    tuning.retry_base_s = tuning.retry_max_s = 0.0
    report = run_loop(settings, tuning, predictor)
    docs = documents(settings.database_url, ids)
    assert {d.state for d in docs.values()} == {DocState.FAILED.value}
    assert all(d.attempts == settings.max_attempts for d in docs.values())
    assert all(
        "gave up after 3 attempts" in d.error_message and "out of memory" in d.error_message
        for d in docs.values()
    )


def test_a_whole_batch_failing_alike_is_retried_not_failed(settings, tuning, queue_texts, version_id):
    ids = queue_texts(["one", "two", "three"])
    calls = []

    def broken_then_fine(texts):
        calls.append(texts)
        return RuntimeError("CUDA error: an illegal memory access") if len(calls) <= 5 else None

    tuning.retry_base_s = tuning.retry_max_s = 0.0
    report = run_loop(settings, tuning, FakePredictor(fail=broken_then_fine))
    assert report.done == 3
    assert {d.state for d in documents(settings.database_url, ids).values()} == {DocState.DONE.value}


def _broken_on_everything(texts):
    return TypeError("ClassifierOutput.topic_probabilities() takes 1 positional argument but 2 were given")


def test_a_model_that_fails_on_everything_fails_no_document(settings, tuning, queue_texts, version_id):
    """Stale code or a broken version makes every document fail: the probe text fails too, so the documents
    go back uncharged and the failure is recorded on the version (was: each document failed after one
    retry, told to check that its file holds ordinary text)."""
    ids = queue_texts(["one plain text", "another plain text", "a third"])
    report = run_loop(settings, tuning, FakePredictor(fail=_broken_on_everything))
    assert report.failed == 0 and report.refunded == 3 and report.no_model
    docs = documents(settings.database_url, ids)
    assert all(d.state == DocState.QUEUED.value and d.attempts == 0 for d in docs.values())
    with session_scope(settings.database_url) as session:
        status = model_status(session)
        error = session.get(ModelVersion, version_id).load_error
    assert "plain probe text" in error and "TypeError" in error and "uncharged" in error
    assert status.state == "failed" and "plain probe text" in status.message
    # nothing is claimed again until the retry interval has passed, then the repaired model runs them
    assert run_loop(settings, tuning, FakePredictor()).claimed == 0
    tuning.model_retry_s = 0.0
    report = run_loop(settings, tuning, FakePredictor())
    assert report.done == 3
    with session_scope(settings.database_url) as session:
        assert session.get(ModelVersion, version_id).load_error is None


def test_while_the_active_version_fails_on_everything_the_previous_one_serves(
    settings, tuning, queue_texts, version_id
):
    ids = queue_texts([f"plain text {i}" for i in range(6)])
    tuning.infer_batch_docs = 2
    with session_scope(settings.database_url) as session:
        newer = register_version(session, path="/nonexistent/newer", source="trained", activate=True).id
    broken, good = FakePredictor(version="newer", fail=_broken_on_everything), FakePredictor(version="older")
    report = process_queue(settings.database_url, lambda v: broken if v.id == newer else good,
                           settings=settings, tuning=tuning, worker_name="test-worker")
    assert report.done == 6 and report.failed == 0 and report.refunded == 2
    docs = documents(settings.database_url, ids)
    assert {d.state for d in docs.values()} == {DocState.DONE.value}
    with session_scope(settings.database_url) as session:
        summaries = session.scalars(select(Result.summary)).all()
        assert model_status(session).state == "degraded"
    assert all(s.startswith("older:") for s in summaries)


def test_identical_content_reuses_the_result_across_owners(
    settings, tuning, queue_texts, make_user, version_id
):
    [first] = queue_texts(["the same words in both files"], owner_id=make_user("a@example.com"))
    run_loop(settings, tuning, FakePredictor())
    predictor = FakePredictor()
    [second, third] = queue_texts(["the same words in both files"] * 2, owner_id=make_user("b@example.com"))
    report = run_loop(settings, tuning, predictor)
    assert report.reused == 2 and predictor.calls == []
    with session_scope(settings.database_url) as session:
        results = {r.document_id: r for r in session.scalars(select(Result))}
    assert results[second].reused_from_id == results[first].id
    assert results[third].summary == results[first].summary
    assert {results[i].document_id for i in (first, second, third)} == {first, second, third}


def test_duplicate_content_in_one_claim_runs_the_model_once(settings, tuning, queue_texts, version_id):
    ids = queue_texts(["twin text"] * 3 + ["single"])
    predictor = FakePredictor()
    report = run_loop(settings, tuning, predictor)
    assert report.done == 4 and sum(predictor.calls) == 2
    assert {d.state for d in documents(settings.database_url, ids).values()} == {DocState.DONE.value}


def test_new_active_version_is_picked_up_between_batches(settings, tuning, queue_texts, version_id):
    ids = queue_texts([f"text {i}" for i in range(16)])
    tuning.infer_batch_docs = 4
    with session_scope(settings.database_url) as session:
        newer = register_version(session, path="/nonexistent/newer", source="trained").id

    def activate_newer(texts):
        with session_scope(settings.database_url) as session:
            activate_version(session, newer)

    old = FakePredictor(version="old", before_run=activate_newer)
    new = FakePredictor(version="new")
    loaded = []

    def predictor_for(version):
        loaded.append(version.id)
        return old if version.id == version_id else new

    report = process_queue(
        settings.database_url, predictor_for, settings=settings, tuning=tuning, worker_name="w"
    )
    assert list(dict.fromkeys(loaded)) == [version_id, newer]
    assert report.released == 12 and report.done == 16
    with session_scope(settings.database_url) as session:
        by_version = dict(
            session.execute(
                select(Result.model_version_id, func.count()).group_by(Result.model_version_id)
            ).all()
        )
    assert by_version == {version_id: 4, newer: 12}
    docs = documents(settings.database_url, ids)
    assert all(d.attempts == 1 for d in docs.values())  # a release does not count as an attempt


def test_heartbeat_keeps_a_long_batch_leased(settings, tuning, queue_texts, version_id):
    ids = queue_texts(["slow one", "slow two"])
    settings.lease_seconds = 1
    swept = []

    def sweep_midway(texts):
        import time

        time.sleep(2.2)  # two lease lengths: without heartbeats the sweeper would take the rows back
        swept.append(sweep(settings.database_url, _NoCelery(), settings=settings, tuning=tuning))

    report = run_loop(settings, tuning, FakePredictor(before_run=sweep_midway))
    assert swept[0].requeued_processing == 0
    assert report.done == 2 and report.lease_lost == 0
    assert {d.state for d in documents(settings.database_url, ids).values()} == {DocState.DONE.value}


def test_suspects_from_a_crashed_batch_run_alone_after_fresh_ones(settings, tuning, queue_texts, version_id):
    ids = queue_texts([f"text {i}" for i in range(6)])
    with session_scope(settings.database_url) as session:  # as if a worker died on these two before
        session.execute(update(Document).where(Document.id.in_(ids[:2])).values(attempts=1))
    predictor = FakePredictor()
    run_loop(settings, tuning, predictor)
    assert predictor.calls == [4, 1, 1]


def test_no_active_model_leaves_documents_queued(settings, tuning, queue_texts):
    ids = queue_texts(["waiting for a model"])
    report = run_loop(settings, tuning, FakePredictor())
    assert report.no_model and report.claimed == 0
    assert documents(settings.database_url, ids)[ids[0]].state == DocState.QUEUED.value


class _NoCelery:
    """The sweeper sends wake-ups through Celery; these tests only look at the database."""

    class conf:  # noqa: N801 - mimics Celery's attribute
        broker_url = "memory://"

    def producer_or_acquire(self):
        import contextlib

        return contextlib.nullcontext(None)

    def send_task(self, *args, **kwargs):
        pass


def test_out_of_time_the_loop_finishes_its_batch_and_hands_back_the_rest(
    settings, tuning, queue_texts, version_id
):
    ids = queue_texts([f"text {i}" for i in range(12)])
    tuning.infer_batch_docs = 4
    report = run_loop(settings, tuning, FakePredictor(), max_seconds=0.0)
    assert report.stopped and report.done == 4 and report.released == 8
    docs = documents(settings.database_url, ids)
    assert sorted(d.state for d in docs.values()) == [DocState.DONE.value] * 4 + [DocState.QUEUED.value] * 8
    assert all(d.lease_owner is None for d in docs.values())
