"""SIGTERM an inference worker in the middle of a claim: it stops within a batch and hands back what it claimed.

Two ways a worker is told to stop:
- ``docker stop`` / Kubernetes: SIGTERM to the main process only (Celery's warm shutdown);
- systemd's default, or ``kill -TERM -<pgid>``: SIGTERM to every process of the group, pool included.
Either way the worker exits within seconds, no document is left ``processing`` under its lease, none is
failed or counted as an attempt, and a new worker finishes them all, once.
"""
from __future__ import annotations

import os
import signal
import time

import pytest

from db.models import DocState
from tests.e2e.conftest import upload, wait_for
from tests.faults import figures
from tests.faults.conftest import news_documents

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(300)]

# a long time slice, so the worker would run on for a while if the stop were not heard mid-claim
INFER_ENV = {"LEXIMIND_CLAIM_BATCH": "64", "LEXIMIND_INFER_BATCH": "4", "LEXIMIND_INFER_TASK_SECONDS": "120"}


@pytest.mark.parametrize("how", ["main-process", "process-group"])
def test_sigterm_hands_back_claimed_documents(fault_stack, fault_api, fault_owner, shared_data, how):
    stack = fault_stack
    extract = stack.worker("extract", "extract,maintenance", wait=False)
    worker = stack.worker("infer-a", "infer", wait=False, **INFER_ENV)
    stack.beat()
    stack.wait_ready(extract, worker)
    started = time.monotonic()
    _, ids = upload(stack, fault_api, fault_owner, news_documents(shared_data, 300, f"term-{how}"))

    def mid_claim() -> bool:
        counts = stack.counts()
        return counts.get(DocState.PROCESSING.value, 0) >= 32 and counts.get(DocState.DONE.value, 0) > 0

    wait_for(mid_claim, 90, "the worker to be mid-claim", stack, interval=0.05)
    stop_sent = time.monotonic()
    if how == "main-process":
        os.kill(worker.popen.pid, signal.SIGTERM)
    else:
        worker.kill(signal.SIGTERM)
    worker.popen.wait(60)
    stop_s = time.monotonic() - stop_sent
    after = stack.counts()
    held = after.get(DocState.PROCESSING.value, 0)

    stack.worker("infer-b", "infer", wait=False, **INFER_ENV)
    wait_for(lambda: figures.finished(stack.database_url, ids) == len(ids), 150, "every document", stack)
    result = figures.count(stack.database_url, f"graceful-shutdown-{how}", ids, time.monotonic() - started,
                           stop_s=round(stop_s, 1), processing_after_stop=held, states_after_stop=after,
                           exit_code=worker.popen.returncode)
    result.write()
    assert not result.problems(), result
    assert result.done == len(ids), result.failed_by_reason
    assert held == 0, f"the stopped worker left {held} documents processing under its lease"
    assert after.get(DocState.DONE.value, 0) < len(ids), "the worker drained the queue instead of stopping"
    assert stop_s < 30, f"the worker took {stop_s:.0f}s to stop"
