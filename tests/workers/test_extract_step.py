"""The extraction step against the real database: verdicts fail at once, crashes retry then fail."""

from __future__ import annotations

from sqlalchemy import func, update

from db.models import DocState, Document
from db.session import session_scope
from db.uploads import UploadedFile, create_job
from tests.workers.conftest import documents
from workers.extract_step import ExtractOutcome, extract_document
from workers.extraction import ExtractionError


def upload(url: str, owner_id: int, files: dict[str, bytes]) -> list[int]:
    with session_scope(url) as session:
        _, docs = create_job(session, owner_id, [UploadedFile(name, data) for name, data in files.items()])
        return [d.id for d in docs]


def run(settings, tuning, document_id, **kwargs):
    return extract_document(
        settings.database_url,
        document_id,
        settings=settings,
        tuning=tuning,
        worker_name="test-extractor",
        **kwargs,
    )


def test_text_file_is_extracted_and_queued(settings, tuning, make_user):
    [doc_id] = upload(
        settings.database_url, make_user(), {"notes.md": b"# Budget\n\nThe council met on Monday."}
    )
    assert run(settings, tuning, doc_id) is ExtractOutcome.QUEUED
    doc = documents(settings.database_url)[doc_id]
    assert doc.state == DocState.QUEUED.value
    assert "council met" in doc.text and doc.title == "Budget"
    assert doc.attempts == 0 and doc.lease_owner is None and doc.queued_at is not None
    assert run(settings, tuning, doc_id) is ExtractOutcome.SKIPPED  # a duplicate message is a no-op


def test_unreadable_file_fails_with_the_extractors_reason(settings, tuning, make_user):
    [doc_id] = upload(settings.database_url, make_user(), {"broken.pdf": b"%PDF-1.7\n%%EOF\n"})
    assert run(settings, tuning, doc_id) is ExtractOutcome.FAILED
    doc = documents(settings.database_url)[doc_id]
    assert doc.state == DocState.FAILED.value
    assert doc.error_code in ("corrupt_file", "no_text")
    assert doc.error_message and doc.finished_at is not None


def test_a_crash_retries_with_backoff_then_fails(settings, tuning, make_user):
    [doc_id] = upload(settings.database_url, make_user(), {"a.txt": b"fine text"})

    def crashing(*args, **kwargs):
        raise OSError("No space left on device")

    tuning.retry_base_s = tuning.retry_max_s = 3600.0
    assert run(settings, tuning, doc_id, extractor=crashing) is ExtractOutcome.RETRY
    doc = documents(settings.database_url)[doc_id]
    assert doc.state == DocState.UPLOADED.value and doc.error_code == "extraction_crashed"
    assert doc.next_attempt_at is not None and doc.wakeup_sent_at is None
    assert run(settings, tuning, doc_id, extractor=crashing) is ExtractOutcome.SKIPPED  # still backing off
    for _ in range(settings.max_attempts - 1):
        with session_scope(settings.database_url) as session:
            session.execute(update(Document).values(next_attempt_at=func.now()))
        outcome = run(settings, tuning, doc_id, extractor=crashing)
    assert outcome is ExtractOutcome.FAILED
    doc = documents(settings.database_url)[doc_id]
    assert doc.state == DocState.FAILED.value and "No space left" in doc.error_message
    assert f"gave up after {settings.max_attempts} attempts" in doc.error_message


def test_extraction_error_is_not_retried(settings, tuning, make_user):
    [doc_id] = upload(settings.database_url, make_user(), {"scan.pdf": b"%PDF-1.4 ..."})

    def image_only(*args, **kwargs):
        raise ExtractionError("no_text_layer", "This PDF is a scan without a text layer.")

    assert run(settings, tuning, doc_id, extractor=image_only) is ExtractOutcome.FAILED
    doc = documents(settings.database_url)[doc_id]
    assert (doc.state, doc.error_code, doc.attempts) == (DocState.FAILED.value, "no_text_layer", 1)


def test_a_batch_is_claimed_together_and_each_file_judged_alone(settings, tuning, make_user):
    from workers.extract_step import extract_documents

    ids = upload(
        settings.database_url,
        make_user(),
        {
            "a.txt": b"first text",
            "b.pdf": b"%PDF-1.7\n%%EOF\n",
            "c.md": b"# Third\n\nbody",
            "d.txt": b"crash me",
        },
    )

    def extractor(data, **kwargs):
        if data == b"crash me":
            raise RuntimeError("the parser sandbox could not start")
        from workers.extraction import extract

        return extract(data, **kwargs)

    woken = []
    outcomes = extract_documents(
        settings.database_url,
        [*ids, 999_999],
        settings=settings,
        tuning=tuning,
        worker_name="batch",
        extractor=extractor,
        on_queued=lambda: woken.append(1),
    )
    assert [outcomes[i] for i in ids] == [
        ExtractOutcome.QUEUED,
        ExtractOutcome.FAILED,
        ExtractOutcome.QUEUED,
        ExtractOutcome.RETRY,
    ]
    assert outcomes[999_999] is ExtractOutcome.SKIPPED and woken
    docs = documents(settings.database_url)
    assert docs[ids[2]].title == "Third" and docs[ids[0]].text == "first text"
    assert docs[ids[3]].state == DocState.UPLOADED.value and docs[ids[3]].error_code == "extraction_crashed"
    assert all(d.lease_owner is None for d in docs.values())


def test_a_parse_longer_than_the_lease_keeps_it_while_the_worker_lives(settings, tuning, make_user):
    """The extraction lease is LEXIMIND_LEASE_SECONDS, not the parser's time limit: the heartbeat renews it,
    so a sweep in the middle of a long parse leaves the document alone; a dead worker's comes back within
    one lease (tests/faults/test_extraction_kill.py)."""
    import time

    from db.sweeps import SweepCounts, requeue_expired_leases

    settings.lease_seconds = 1
    [doc_id] = upload(settings.database_url, make_user(), {"slow.txt": b"a slow file"})
    swept, seen = SweepCounts(), []

    def slow(data, **kwargs):
        time.sleep(2.5)  # two and a half leases
        with session_scope(settings.database_url) as session:
            requeue_expired_leases(session, settings.max_attempts, swept)
            seen.append(session.get(Document, doc_id).state)
        from workers.extraction import extract

        return extract(data, **kwargs)

    assert run(settings, tuning, doc_id, extractor=slow) is ExtractOutcome.QUEUED
    assert seen == [DocState.EXTRACTING.value] and swept.requeued_extracting == 0
