"""Attempts count runs that started, not claims: a worker that dies charges only what it was working on."""

from __future__ import annotations

from sqlalchemy import func, select, text, update

from db.models import DocState, Document
from db.session import session_scope
from db.uploads import UploadedFile, create_job
from tests.workers.conftest import documents
from tests.workers.fakes import FakePredictor
from tests.workers.test_inference import _NoCelery, run_loop
from workers.extract_step import extract_documents
from workers.sweeper import sweep

KILLER = "kills the worker"


class WorkerDied(BaseException):
    """Stands for SIGKILL: nothing below the loop catches it, nothing is written after it."""


def expire_leases_and_sweep(settings, tuning):
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Document)
            .where(Document.lease_owner.is_not(None))
            .values(lease_expires_at=func.now() - text("interval '1 second'"))
        )
    return sweep(settings.database_url, _NoCelery(), settings=settings, tuning=tuning)


def test_documents_claimed_behind_a_crash_are_not_charged(settings, tuning, queue_texts, version_id):
    # the killer is the shortest text, so it runs in the first batch; the rest wait behind it in the claim
    ids = queue_texts([KILLER] + [f"an innocent document with a longer text, number {i}" for i in range(7)])
    tuning.infer_batch_docs = 2

    def die_on_killer(texts):
        if KILLER in texts:
            raise WorkerDied

    predictor = FakePredictor(before_run=die_on_killer)
    for _ in range(10):
        try:
            run_loop(settings, tuning, predictor)
        except WorkerDied:
            pass
        expire_leases_and_sweep(settings, tuning)
        with session_scope(settings.database_url) as session:
            left = session.scalar(
                select(func.count()).where(
                    Document.state.not_in([DocState.DONE.value, DocState.FAILED.value])
                )
            )
        if not left:
            break
    docs = documents(settings.database_url, ids)
    killer = docs[ids[0]]
    assert killer.state == DocState.FAILED.value and killer.error_code == "worker_lost"
    assert killer.attempts == settings.max_attempts
    innocents = [docs[i] for i in ids[1:]]
    assert [d.state for d in innocents] == [DocState.DONE.value] * 7, [(d.id, d.state) for d in innocents]
    # the one that shared the killer's first batch ran twice (that batch, then alone); the others once
    assert sorted(d.attempts for d in innocents) == [1] * 6 + [2]


def test_an_extraction_crash_charges_only_the_file_being_read(settings, tuning, make_user):
    with session_scope(settings.database_url) as session:
        _, docs = create_job(
            session,
            make_user(),
            [
                UploadedFile("a.txt", b"first file"),
                UploadedFile("b.txt", KILLER.encode()),
                UploadedFile("c.txt", b"third file"),
            ],
        )
        ids = [d.id for d in docs]

    def extractor(data, **kwargs):
        if data == KILLER.encode():
            raise WorkerDied
        from workers.extraction import extract_in_process

        return extract_in_process(data, **kwargs)

    def crash_once():
        try:
            extract_documents(
                settings.database_url,
                ids,
                settings=settings,
                tuning=tuning,
                worker_name="x",
                extractor=extractor,
            )
        except WorkerDied:
            pass
        expire_leases_and_sweep(settings, tuning)
        return documents(settings.database_url, ids)

    docs = crash_once()
    # files never tried are charged once together when the message starts: a death charges all of them once
    assert [(docs[i].state, docs[i].attempts) for i in ids] == [(DocState.UPLOADED.value, 1)] * 3
    docs = crash_once()
    # from then on they are suspects: read one by one, each charged just before it is read and written before
    # the next starts; the first was read and queued, the killer charged again, the one behind it not
    assert [(docs[i].state, docs[i].attempts) for i in ids] == [
        (DocState.QUEUED.value, 0),
        (DocState.UPLOADED.value, 2),
        (DocState.UPLOADED.value, 1),
    ]
    for _ in range(settings.max_attempts - 2):
        docs = crash_once()
    # fewest attempts first: the third file is read before the killer, which fails alone
    assert docs[ids[1]].state == DocState.FAILED.value and docs[ids[1]].error_code == "extraction_worker_lost"
    assert [docs[i].state for i in (ids[0], ids[2])] == [DocState.QUEUED.value] * 2
