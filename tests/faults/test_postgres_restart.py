"""Crash PostgreSQL (immediate shutdown: every connection drops, open transactions are lost) in the middle of
a run, keep it down for a few seconds, start it again.

The private cluster of tests/faults/services.py, never the machine's server. While it is down the API
answers 503 with a JSON error or an error page (no traceback) and the workers' tasks fail; nothing is written half-way because
every transition is one transaction. Afterwards pooled connections are replaced (pool_pre_ping), expired
leases go back to the queue and the sweeper re-sends wake-ups: every document finishes, once.
"""
from __future__ import annotations

import time

import pytest

from db.models import DocState
from tests.e2e.conftest import upload, wait_for
from tests.faults import figures
from tests.faults.conftest import FAULTS_EMAIL, news_documents
from tests.web.conftest import Person, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(360)]

DOCUMENTS = 200
LATE = 40  # uploaded just before the crash, so the crash also hits extraction
OUTAGE_S = 4.0
# the parser's time limit; an extraction cut off by the outage keeps its lease for LEXIMIND_LEASE_SECONDS
EXTRACT_TIMEOUT_S = "5"


def test_postgres_crash_and_restart_mid_run(fault_stack, fault_api, fault_owner, private_pg, shared_data):
    stack = fault_stack
    extract = stack.worker("extract", "extract,maintenance", wait=False, LEXIMIND_EXTRACT_TIMEOUT=EXTRACT_TIMEOUT_S)
    infer = stack.worker("infer", "infer", wait=False, LEXIMIND_CLAIM_BATCH="16", LEXIMIND_INFER_BATCH="8")
    beat = stack.beat()
    stack.wait_ready(extract, infer)
    bearer = {"Authorization": f"Bearer {fault_owner[1]}"}

    started = time.monotonic()
    docs = news_documents(shared_data, DOCUMENTS, "pg")
    job_id, ids = upload(stack, fault_api, fault_owner, docs[:-LATE])
    browser = fault_api.application.test_client()
    sign_in(browser, Person(fault_owner[0], FAULTS_EMAIL, fault_owner[1], "user"))

    def inferring() -> bool:
        counts = stack.counts()
        return counts.get(DocState.PROCESSING.value, 0) + counts.get(DocState.DONE.value, 0) > 0

    wait_for(inferring, 60, "the first claim", stack, interval=0.05)
    ids += upload(stack, fault_api, fault_owner, docs[-LATE:])[1]  # their extraction starts now
    # crash at an instant when a batch is inside the model and files are being read (between two batches,
    # for a few milliseconds, nothing is `processing`: reading the counts once could land there)
    seen: list[dict] = []

    def mid_work() -> bool:
        seen.append(stack.counts())
        counts = seen[-1]
        return counts.get(DocState.PROCESSING.value, 0) > 0 and (
            counts.get(DocState.UPLOADED.value, 0) + counts.get(DocState.EXTRACTING.value, 0) > 0)

    wait_for(mid_work, 60, "a batch in the model while files are read", stack, interval=0.01)
    before = seen[-1]
    private_pg.crash()
    crashed = time.monotonic()

    answers = []
    while time.monotonic() - crashed < OUTAGE_S:
        response = fault_api.get(f"/api/v1/jobs/{job_id}", headers=bearer)
        body = response.get_data(as_text=True)
        answers.append(response.status_code)
        assert response.status_code == 503 and response.is_json, (response.status_code, body[:300])
        assert response.get_json()["error"]["code"] == "database_unavailable"
        page = browser.get("/documents")
        assert page.status_code == 503 and "Traceback" not in page.get_data(as_text=True)
        answers.append(page.status_code)
        time.sleep(0.5)
    private_pg.start()
    restarted = time.monotonic()

    wait_for(lambda: figures.finished(stack.database_url, ids) == len(ids), 200,
             "every document after the PostgreSQL restart", stack)
    wall = time.monotonic() - started
    job = fault_api.get(f"/api/v1/jobs/{job_id}", headers=bearer)
    assert job.status_code == 200, job.get_data(as_text=True)[:300]
    waiting = sum(before.get(s.value, 0) for s in (DocState.UPLOADED, DocState.EXTRACTING, DocState.QUEUED,
                                                   DocState.PROCESSING))
    result = figures.count(stack.database_url, "postgres-restart", ids, wall, states_at_crash=before,
                           waiting_at_crash=waiting,
                           outage_s=round(restarted - crashed, 1), api_during_outage=sorted(set(answers)),
                           recovery_s=round(time.monotonic() - restarted, 1))
    result.write()

    assert before.get(DocState.PROCESSING.value, 0) > 0, f"the crash missed the model: {before}"
    assert before.get(DocState.UPLOADED.value, 0) + before.get(DocState.EXTRACTING.value, 0) > 0, before
    assert not result.problems(), result
    assert result.done == len(ids), result.failed_by_reason
    for proc in (extract, infer, beat):
        assert proc.alive(), f"{proc.name} did not survive the PostgreSQL restart:\n{proc.log()}"
