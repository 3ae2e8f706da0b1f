"""SIGTERM an inference worker in the middle of a claim: it stops within a batch and hands back what it claimed.

The two ways a worker is told to stop, one after the other in one run:
- ``docker stop`` / Kubernetes: SIGTERM to the main process only (Celery's warm shutdown);
- systemd's default, or ``kill -TERM -<pgid>``: SIGTERM to every process of the group, pool included.
Each time the worker exits within seconds without draining the queue, no document is left ``processing``
under its lease, none is failed, and the next worker finishes them all, once.
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

# a long time slice, so a worker would run on for a while if the stop were not heard mid-claim
INFER_ENV = {"LEXIMIND_CLAIM_BATCH": "64", "LEXIMIND_INFER_BATCH": "4", "LEXIMIND_INFER_TASK_SECONDS": "120"}
WAYS = ("main-process", "process-group")


def test_sigterm_hands_back_claimed_documents(fault_stack, fault_api, fault_owner, shared_data):
    stack = fault_stack
    extract = stack.worker("extract", "extract,maintenance", wait=False)
    stack.beat()
    stack.wait_ready(extract)
    started = time.monotonic()
    _, ids = upload(stack, fault_api, fault_owner, news_documents(shared_data, 400, "term"))

    stops = {}
    for n, how in enumerate(WAYS):
        worker = stack.worker(f"infer-{n}", "infer", **INFER_ENV)
        done_before = stack.counts().get(DocState.DONE.value, 0)

        def mid_claim(before=done_before) -> bool:
            counts = stack.counts()
            return counts.get(DocState.PROCESSING.value, 0) >= 32 and counts.get(DocState.DONE.value, 0) > before

        wait_for(mid_claim, 90, f"worker {n} to be mid-claim", stack, interval=0.05)
        sent = time.monotonic()
        if how == "main-process":
            os.kill(worker.popen.pid, signal.SIGTERM)
        else:
            worker.kill(signal.SIGTERM)
        worker.popen.wait(60)
        after = stack.counts()
        stops[how] = {"stop_s": round(time.monotonic() - sent, 1), "exit_code": worker.popen.returncode,
                      "processing_after_stop": after.get(DocState.PROCESSING.value, 0),
                      "done_at_stop": after.get(DocState.DONE.value, 0)}

    stack.worker("infer-last", "infer", wait=False, **INFER_ENV)
    wait_for(lambda: figures.finished(stack.database_url, ids) == len(ids), 150, "every document", stack)
    result = figures.count(stack.database_url, "graceful-shutdown", ids, time.monotonic() - started, stops=stops)
    result.write()
    assert not result.problems(), result
    assert result.done == len(ids), result.failed_by_reason
    for how, stop in stops.items():
        assert stop["processing_after_stop"] == 0, f"{how}: documents left processing under the stopped lease"
        assert stop["done_at_stop"] < len(ids), f"{how}: the worker drained the queue instead of stopping"
        assert stop["stop_s"] < 30 and stop["exit_code"] == 0, (how, stop)
