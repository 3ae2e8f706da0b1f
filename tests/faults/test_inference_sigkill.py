"""SIGKILL the inference worker in the middle of a batch, again and again, during a 1,000-document run.

Each kill takes the Celery parent and its pool child at once (the process group), while the child holds a
claim of up to 64 documents under a 4 s lease. The sweeper hands the rows back once the lease expires and
a new worker claims them; documents that were in a killed claim run alone afterwards, so a document that
kills its worker every time fails by itself (``worker_lost``) instead of taking batch-mates down.
"""
from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from db.models import DocState, Document
from db.session import session_scope
from tests.e2e.conftest import upload, wait_for
from tests.faults import figures
from tests.faults.conftest import news_documents

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(480)]

DOCUMENTS = 1000
KILLS = 3
INFER_ENV = {"LEXIMIND_CLAIM_BATCH": "64", "LEXIMIND_INFER_BATCH": "16"}


def test_repeated_sigkill_of_the_inference_worker_mid_batch(fault_stack, fault_api, fault_owner, shared_data):
    stack = fault_stack
    extract = stack.worker("extract", "extract,maintenance", wait=False)
    worker = stack.worker("infer-0", "infer", wait=False, **INFER_ENV)
    stack.beat()
    stack.wait_ready(extract, worker)

    started = time.monotonic()
    _, ids = upload(stack, fault_api, fault_owner, news_documents(shared_data, DOCUMENTS, "kill"))
    kills = []
    for n in range(1, KILLS + 1):
        done_before = stack.counts().get(DocState.DONE.value, 0)

        def busy(before=done_before) -> bool:
            counts = stack.counts()
            return counts.get(DocState.DONE.value, 0) >= before + 20 and counts.get(DocState.PROCESSING.value, 0) > 0

        wait_for(busy, 120, f"worker {n - 1} to be mid-batch", stack, interval=0.05)
        worker.kill()  # SIGKILL to the Celery parent and its pool child
        worker.popen.wait(10)
        at_kill = stack.counts()
        kills.append({"after_s": round(time.monotonic() - started, 1),
                      "processing_at_kill": at_kill.get(DocState.PROCESSING.value, 0),
                      "done_at_kill": at_kill.get(DocState.DONE.value, 0)})
        worker = stack.worker(f"infer-{n}", "infer", wait=False, **INFER_ENV)

    wait_for(lambda: figures.finished(stack.database_url, ids) == len(ids), 240,
             "every document after the kills", stack)
    wall = time.monotonic() - started
    with session_scope(stack.database_url) as session:
        claimed_again = session.scalar(select(func.count()).where(Document.id.in_(ids), Document.attempts > 1))
    result = figures.count(stack.database_url, "inference-sigkill", ids, wall, kills=kills,
                           claimed_again=claimed_again, documents_per_s=round(len(ids) / wall, 1))
    result.write()

    assert not result.problems(), result
    assert all(k["processing_at_kill"] > 0 for k in kills), f"a kill missed the batch: {kills}"
    assert claimed_again > 0, "the killed workers' documents should have been claimed a second time"
    assert set(result.failed_by_reason) <= {"worker_lost"}, result.failed_by_reason
    assert extract.alive(), "the extraction worker should not notice the inference worker's deaths"
