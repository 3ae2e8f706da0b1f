"""The sweeper with the real Redis: expired leases come back, lost wake-ups are re-sent after a FLUSHALL."""

from __future__ import annotations

import json

import pytest
import redis
from sqlalchemy import func, text, update

from db.leases import claim_for_extraction, claim_queued, start_attempts
from db.models import DocState, Document
from db.session import session_scope
from db.uploads import UploadedFile, create_job
from leximind.messaging import make_celery, wake_infer
from leximind.queues import QUEUE_EXTRACT, QUEUE_INFER, TASK_EXTRACT
from tests.workers.conftest import documents
from workers.sweeper import sweep


@pytest.fixture()
def broker(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield make_celery(redis_url), client
    client.flushall()


def queued_messages(client, queue: str) -> list[dict]:
    return [json.loads(m) for m in client.lrange(queue, 0, -1)]


def age_wakeups(url: str, seconds: int = 3600) -> None:
    with session_scope(url) as session:
        session.execute(
            update(Document).values(wakeup_sent_at=func.now() - text(f"interval '{seconds} seconds'"))
        )


def test_expired_leases_go_back_and_are_woken(settings, tuning, queue_texts, make_user, broker):
    celery, client = broker
    ids = queue_texts(["one", "two", "three"])
    with session_scope(settings.database_url) as session:
        claim_queued(session, 10, "dead-worker/1", 60)
        [upload] = create_job(session, make_user("b@example.com"), [UploadedFile("x.txt", b"x")])[1]
    with session_scope(settings.database_url) as session:
        claim_for_extraction(session, [upload.id], "dead-extractor/1", 60)
        session.execute(update(Document).values(lease_expires_at=func.now() - text("interval '1 second'")))
    counts = sweep(settings.database_url, celery, settings=settings, tuning=tuning)
    assert (counts.requeued_processing, counts.requeued_extracting, counts.failed_lost) == (3, 1, 0)
    docs = documents(settings.database_url)
    assert [docs[i].state for i in ids] == [DocState.QUEUED.value] * 3
    assert docs[upload.id].state == DocState.UPLOADED.value
    assert all(d.lease_owner is None for d in docs.values())
    # requeued rows lost their wake-up with the dead worker: the same sweep sends new ones
    assert [m["headers"]["task"] for m in queued_messages(client, QUEUE_EXTRACT)] == [TASK_EXTRACT]
    assert client.llen(QUEUE_INFER) == 1


def test_a_document_that_keeps_killing_its_worker_fails(settings, tuning, queue_texts, broker):
    celery, _ = broker
    [doc_id] = queue_texts(["kills the worker"])
    for attempt in range(settings.max_attempts):
        with session_scope(settings.database_url) as session:
            assert claim_queued(session, 1, f"doomed/{attempt}", 60)
            assert start_attempts(session, [doc_id], f"doomed/{attempt}", DocState.PROCESSING)
            session.execute(
                update(Document).values(lease_expires_at=func.now() - text("interval '1 second'"))
            )
        sweep(settings.database_url, celery, settings=settings, tuning=tuning)
    doc = documents(settings.database_url)[doc_id]
    assert doc.state == DocState.FAILED.value and doc.error_code == "worker_lost"
    assert "stopped 3 times" in doc.error_message


def test_flushall_loses_nothing(settings, tuning, queue_texts, make_user, broker):
    celery, client = broker
    queued = queue_texts(["queued and waiting"])
    with session_scope(settings.database_url) as session:
        _, uploads = create_job(
            session,
            make_user("c@example.com"),
            [UploadedFile(f"f{i}.txt", f"text {i}".encode()) for i in range(3)],
        )
    upload_ids = [d.id for d in uploads]
    from leximind.messaging import wake_extract

    wake_extract(celery, upload_ids)
    wake_infer(celery)
    assert client.llen(QUEUE_EXTRACT) == 3
    client.flushall()  # every message and the infer flag are gone

    fresh = sweep(settings.database_url, celery, settings=settings, tuning=tuning)
    assert fresh.extract_wakeups == [] and fresh.infer_due == 0  # wake-ups are recent: nothing re-sent yet
    age_wakeups(settings.database_url)
    counts = sweep(settings.database_url, celery, settings=settings, tuning=tuning)
    assert counts.extract_wakeups == upload_ids and counts.infer_due == len(queued)
    assert sorted(m["headers"]["argsrepr"] for m in queued_messages(client, QUEUE_EXTRACT)) == [
        f"[{i}]" for i in upload_ids
    ]
    assert client.llen(QUEUE_INFER) == 1
    again = sweep(settings.database_url, celery, settings=settings, tuning=tuning)
    assert again.extract_wakeups == [] and again.infer_due == 0  # stamped: no storm of duplicates


def test_infer_wakeups_are_coalesced(broker):
    celery, client = broker
    assert wake_infer(celery) is True
    assert [wake_infer(celery) for _ in range(10)] == [False] * 10
    assert client.llen(QUEUE_INFER) == 1
    assert wake_infer(celery, force=True) is True and client.llen(QUEUE_INFER) == 2


def test_large_uploads_are_woken_in_a_few_messages(broker):
    from leximind.messaging import extract_chunks, wake_extract

    celery, client = broker
    assert extract_chunks([1, 2, 3]) == [[1], [2], [3]]
    assert [len(c) for c in extract_chunks(list(range(40)))] == [5] * 8
    assert [len(c) for c in extract_chunks(list(range(200)))] == [16] * 12 + [8]
    wake_extract(celery, list(range(1, 201)))
    bodies = [json.loads(m["headers"]["argsrepr"]) for m in queued_messages(client, QUEUE_EXTRACT)]
    assert len(bodies) == 13 and sorted(i for [ids] in bodies for i in ids) == list(range(1, 201))
