"""Kill the extraction worker while its parser child is in the middle of a slow parse (deeply nested HTML).

Twice, two ways:
1. SIGKILL the Celery pool process only: the parent starts a new one and re-delivers the message
   (``task_reject_on_worker_lost``); the orphaned parser child must notice and exit by itself;
2. SIGKILL the whole worker (parent, pool process and parser child), then start a new worker.

Either way the document keeps its extraction lease (time limit + 60 s) until the sweeper hands it back,
then it is read again. The documents claimed with it (one extract message carries a few ids) wait with
it; every other document goes on.
"""
from __future__ import annotations

import time

import psutil
import pytest
from sqlalchemy import select

from db.models import DocState, Document
from db.session import session_scope
from tests.e2e.conftest import Proc, upload, wait_for
from tests.faults import figures
from tests.faults.conftest import news_documents

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(360)]

EXTRACT_ENV = {"LEXIMIND_EXTRACT_TIMEOUT": "10"}  # lease = 10 s + 60 s of slack (workers/extract_step.py)
NESTING = 40_000  # about 2 s of parsing in the sandbox child
PARSER = "workers.extraction.child"


def slow_html(tag: str) -> tuple[str, bytes]:
    page = f"<html><body><p>{tag} before</p>" + "<div>" * NESTING + "deep inside" + "</div>" * NESTING
    return f"{tag}.html", (page + "<p>after</p></body></html>").encode()


def state_of(database_url: str, document_id: int) -> str:
    with session_scope(database_url) as session:
        return session.scalar(select(Document.state).where(Document.id == document_id))


def same_claim(database_url: str, document_ids: list[int]) -> set[int]:
    """The documents claimed under the same leases as these (one extract message claims several)."""
    with session_scope(database_url) as session:
        leases = select(Document.lease_owner).where(Document.id.in_(document_ids))
        return set(session.scalars(select(Document.id).where(Document.lease_owner.in_(leases))))


def parser_children(worker: Proc) -> list[psutil.Process]:
    try:
        family = psutil.Process(worker.popen.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in family if PARSER in " ".join(p.cmdline())]


def parsing(stack, worker: Proc, document_id: int) -> psutil.Process | None:
    """The parser child, if it is busy with ``document_id`` right now (extracting, and burning CPU)."""
    if state_of(stack.database_url, document_id) != DocState.EXTRACTING.value:
        return None
    for child in parser_children(worker):
        try:
            before = sum(child.cpu_times()[:2])
            time.sleep(0.2)
            if sum(child.cpu_times()[:2]) > before:
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def wait_parsing(stack, worker: Proc, document_id: int) -> psutil.Process:
    found: list[psutil.Process] = []

    def check() -> bool:
        child = parsing(stack, worker, document_id)
        if child is not None:
            found.append(child)
        return child is not None

    wait_for(check, 90, f"document {document_id} to be in the parser", stack, interval=0.05)
    return found[0]


@pytest.mark.skip(reason="known race, open: on an idle machine the second slow document is parsed and done "
                         "before the test finds it in the parser (passes under load; fails at load ~1)")
def test_extraction_worker_killed_inside_a_parser(fault_stack, fault_api, fault_owner, shared_data):
    stack = fault_stack
    extract = stack.worker("extract-a", "extract,maintenance", wait=False, **EXTRACT_ENV)
    infer = stack.worker("infer", "infer", wait=False)
    stack.beat()
    stack.wait_ready(extract, infer)
    plain = news_documents(shared_data, 80, "parse")

    started = time.monotonic()
    _, first = upload(stack, fault_api, fault_owner, [slow_html("slow-a")] + plain[:40])
    _, second = upload(stack, fault_api, fault_owner, [slow_html("slow-b")] + plain[40:])
    ids, slow_a, slow_b = first + second, first[0], second[0]

    # 1. the pool process dies mid-parse; its parser child is orphaned
    parser = wait_parsing(stack, extract, slow_a)
    pool = parser.parent()
    pool.kill()
    orphan_gone = psutil.wait_procs([parser], timeout=30)[1] == []
    # 2. the whole worker dies mid-parse (the new pool process reached the second slow document)
    parser_b = wait_parsing(stack, extract, slow_b)
    extract.kill()
    extract.popen.wait(10)
    assert not psutil.pid_exists(parser_b.pid) or parser_b.status() == psutil.STATUS_ZOMBIE
    killed_at = time.monotonic()
    stuck = same_claim(stack.database_url, [slow_a, slow_b])  # wait for the lease with them
    others = [i for i in ids if i not in stuck]
    replacement = stack.worker("extract-b", "extract,maintenance", **EXTRACT_ENV)

    wait_for(lambda: figures.finished(stack.database_url, others) == len(others), 120, "the other documents", stack)
    others_done_while_leased = state_of(stack.database_url, slow_b) == DocState.EXTRACTING.value
    wait_for(lambda: figures.finished(stack.database_url, ids) == len(ids), 150,
             "the killed documents to be read again", stack)
    wall = time.monotonic() - started
    result = figures.count(stack.database_url, "extraction-kill", ids, wall, orphan_parser_exited=orphan_gone,
                           others_done_while_leased=others_done_while_leased,
                           claimed_with_the_killed_documents=len(stuck) - 2,
                           slow_documents={"a": state_of(stack.database_url, slow_a),
                                           "b": state_of(stack.database_url, slow_b)},
                           recovery_after_kill_s=round(time.monotonic() - killed_at, 1))
    result.write()

    assert not result.problems(), result
    assert orphan_gone, "the parser child of the killed pool process kept running"
    assert others_done_while_leased, "the other documents should not wait for the killed ones"
    # a slow document may hit its time limit on a loaded machine; then it fails with that reason
    assert set(result.failed_by_reason) <= {"timeout"}, result.failed_by_reason
    assert result.done >= len(ids) - 2
    assert replacement.alive() and infer.alive()
