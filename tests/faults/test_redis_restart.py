"""Kill Redis mid-run (no persistence: every queued and unacknowledged message is gone), upload while it is
down, then start an empty Redis on the same port.

Postgres is the record and Redis carries only wake-ups, so: the upload during the outage still answers
202 (its wake-ups are lost, the documents are stored), the workers and beat reconnect on their own, and the
sweeper re-sends a wake-up for every document still waiting. Nothing is lost, nothing runs twice.
"""
from __future__ import annotations

import time

import pytest

from db.models import DocState
from tests.e2e.conftest import upload, wait_for
from tests.faults import figures
from tests.faults.conftest import news_documents

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(300)]

BEFORE, DURING = 200, 50
OUTAGE_S = 3.0


def test_redis_restart_with_every_message_lost(fault_stack, fault_api, fault_owner, private_redis, shared_data):
    stack = fault_stack
    extract = stack.worker("extract", "extract,maintenance", wait=False)
    infer = stack.worker("infer", "infer", wait=False, LEXIMIND_CLAIM_BATCH="16", LEXIMIND_INFER_BATCH="8")
    beat = stack.beat()
    stack.wait_ready(extract, infer)
    docs = news_documents(shared_data, BEFORE + DURING, "redis")

    started = time.monotonic()
    _, ids = upload(stack, fault_api, fault_owner, docs[:BEFORE])
    wait_for(lambda: stack.counts().get(DocState.DONE.value, 0) > 0, 60, "the first results", stack, interval=0.05)
    private_redis.kill()
    at_kill = stack.counts()
    waiting = sum(at_kill.get(s.value, 0) for s in (DocState.UPLOADED, DocState.EXTRACTING, DocState.QUEUED,
                                                    DocState.PROCESSING))
    assert waiting > 0, f"nothing left to lose: {at_kill}"

    outage_started = time.monotonic()
    _, during_ids = upload(stack, fault_api, fault_owner, docs[BEFORE:])  # 202: stored, wake-ups lost
    ids += during_ids
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
    private_redis.start()
    restarted = time.monotonic()

    wait_for(lambda: figures.finished(stack.database_url, ids) == len(ids), 180,
             "every document after the Redis restart", stack)
    wall = time.monotonic() - started
    result = figures.count(stack.database_url, "redis-restart", ids, wall, waiting_at_kill=waiting,
                           uploaded_during_outage=len(during_ids), outage_s=round(restarted - outage_started, 1),
                           recovery_s=round(time.monotonic() - restarted, 1))
    result.write()

    assert not result.problems(), result
    assert result.done == len(ids), result.failed_by_reason
    for proc in (extract, infer, beat):
        assert proc.alive(), f"{proc.name} did not survive the Redis restart:\n{proc.log()}"
