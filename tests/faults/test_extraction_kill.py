"""Kill the extraction worker while its parser child is inside a document.

The worker runs the sandbox's test child (tests/extraction/hostile_child.py, named by
``LEXIMIND_TEST_EXTRACTION_CHILD``). The two slow documents start with a GATE line: their parse holds, without
using CPU, until the test opens the gate, so the test never races the parser, however idle or loaded the
machine. A document is inside the parser when three things agree:
- the child wrote ``inside-<pid>`` at the document's gate (it is in the parse and cannot leave it);
- that process is alive and a child of one of the worker's pool processes;
- the document is ``extracting`` under a lease of that same pool process (lease owner ``<host>:<pid>/...``).

Twice, two ways:
1. SIGKILL the Celery pool process only: the parent starts a new one and re-delivers the message
   (``task_reject_on_worker_lost``). The orphaned parser child is still held at the gate; the test opens it
   and the child, whose parse is now over, must exit by itself (its answer has nowhere to go);
2. SIGKILL the whole worker (parent, pool process and parser child), open the second gate, start a new worker.

Either way the document keeps its extraction lease until the sweeper hands it back, then it is read again
(through the open gate). The heartbeat that renewed the lease died with the worker, so that takes one lease
(``LEXIMIND_LEASE_SECONDS``, 4 s here), not the parser's time limit: the test asserts that everything is
done well within the old lease of time limit + 60 s.
"""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import psutil
import pytest
from sqlalchemy import select

from db.models import DocState, Document
from db.session import session_scope
from tests.e2e.conftest import Proc, upload, wait_for
from tests.extraction.conftest import HOSTILE_CHILD
from tests.extraction.hostile_child import opened
from tests.faults import figures
from tests.faults.conftest import news_documents
from workers.extraction.sandbox import TEST_CHILD_ENV

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(360)]

EXTRACT_ENV = {
    "LEXIMIND_EXTRACT_TIMEOUT": "10",  # the parser's time limit; the lease is LEXIMIND_LEASE_SECONDS
    TEST_CHILD_ENV: shlex.join([sys.executable, str(HOSTILE_CHILD)]),
}


class Gate:
    """A folder the hostile child waits on: ``inside-<pid>`` once a child is held there, ``open`` to let it go."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir()

    def document(self, tag: str) -> tuple[str, bytes]:
        page = f"<html><body><p>{tag} before</p><div><div>deep inside</div></div><p>after</p></body></html>"
        return f"{tag}.html", f"GATE {self.folder}\n{page}".encode()

    def held(self) -> list[int]:
        """The process ids of the children that reached this gate."""
        return [int(path.name.removeprefix("inside-")) for path in self.folder.glob("inside-*")]

    def open(self) -> None:
        opened(self.folder).touch()

    def is_open(self) -> bool:
        return opened(self.folder).exists()


def lease_of(database_url: str, document_id: int) -> tuple[str, str | None]:
    with session_scope(database_url) as session:
        row = session.execute(select(Document.state, Document.lease_owner).where(Document.id == document_id)).one()
        return row.state, row.lease_owner


def state_of(database_url: str, document_id: int) -> str:
    return lease_of(database_url, document_id)[0]


def same_claim(database_url: str, document_ids: list[int]) -> set[int]:
    """The documents claimed under the same leases as these (one extract message claims several)."""
    with session_scope(database_url) as session:
        leases = select(Document.lease_owner).where(Document.id.in_(document_ids))
        return set(session.scalars(select(Document.id).where(Document.lease_owner.in_(leases))))


def pid_of_lease(owner: str | None) -> int | None:
    """The pool process that holds a lease: owners are ``<host>:<pid>/<claim>`` (workers/runtime.py)."""
    if not owner:
        return None
    worker = owner.split("/", 1)[0]
    return int(worker.rsplit(":", 1)[1]) if ":" in worker else None


def exited(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def held_in_parser(stack, worker: Proc, gate: Gate, document_id: int) -> psutil.Process | None:
    """The parser child that is inside ``document_id`` right now (see the module notes), or None."""
    if gate.is_open():
        return None
    for pid in gate.held():
        try:
            child = psutil.Process(pid)
            pool = child.parent()
            if pool is None or pool.ppid() != worker.popen.pid or exited(child):
                continue  # not a parser of a live pool process of this worker
        except psutil.NoSuchProcess:
            continue
        state, owner = lease_of(stack.database_url, document_id)
        if state == DocState.EXTRACTING.value and pid_of_lease(owner) == pool.pid:
            return child
    return None


def wait_held(stack, worker: Proc, gate: Gate, document_id: int) -> psutil.Process:
    found: list[psutil.Process] = []

    def check() -> bool:
        child = held_in_parser(stack, worker, gate, document_id)
        if child is not None:
            found.append(child)
        return child is not None

    wait_for(check, 90, f"document {document_id} to be inside the parser", stack, interval=0.05)
    return found[0]


def within(timeout: float, predicate) -> bool:
    """Whether ``predicate`` becomes true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_exited(process: psutil.Process, timeout: float) -> bool:
    return within(timeout, lambda: exited(process))


def orphaned(child: psutil.Process, parent: psutil.Process) -> bool:
    """``child`` outlived ``parent`` and was handed to another parent (only once every thread of a killed
    process is gone: until then the kernel hands the children to a sibling thread, same process id)."""
    try:
        return not exited(child) and child.ppid() != parent.pid
    except psutil.NoSuchProcess:
        return False


def test_extraction_worker_killed_inside_a_parser(fault_stack, fault_api, fault_owner, shared_data, tmp_path):
    stack = fault_stack
    gate_a, gate_b = Gate(tmp_path / "gate-a"), Gate(tmp_path / "gate-b")
    extract = stack.worker("extract-a", "extract,maintenance", wait=False, **EXTRACT_ENV)
    infer = stack.worker("infer", "infer", wait=False)
    stack.beat()
    stack.wait_ready(extract, infer)
    plain = news_documents(shared_data, 80, "parse")

    try:
        started = time.monotonic()
        _, first = upload(stack, fault_api, fault_owner, [gate_a.document("slow-a")] + plain[:40])
        _, second = upload(stack, fault_api, fault_owner, [gate_b.document("slow-b")] + plain[40:])
        ids, slow_a, slow_b = first + second, first[0], second[0]

        # 1. the pool process dies mid-parse; its parser child is orphaned, still inside the document
        parser = wait_held(stack, extract, gate_a, slow_a)
        pool = parser.parent()
        pool.kill()
        pool_gone = wait_exited(pool, 10)
        orphan_held = within(10, lambda: orphaned(parser, pool) or exited(parser)) and not exited(parser)
        gate_a.open()  # the orphan's parse ends now; it must notice that its worker is gone and exit
        orphan_gone = wait_exited(parser, 30)

        # 2. the whole worker dies mid-parse (the new pool process reached the second slow document)
        parser_b = wait_held(stack, extract, gate_b, slow_b)
        new_pool = parser_b.ppid()
        extract.kill()
        extract.popen.wait(10)
        parser_b_killed = wait_exited(parser_b, 10)
        killed_at = time.monotonic()
    finally:
        gate_a.open()  # whatever happened, no child stays held (they read on, then exit with their worker)
        gate_b.open()
    stuck = same_claim(stack.database_url, [slow_a, slow_b])  # claimed with them: back with them
    replacement = stack.worker("extract-b", "extract,maintenance", **EXTRACT_ENV)
    wait_for(lambda: figures.finished(stack.database_url, ids) == len(ids), 150,
             "the killed documents to be read again", stack)
    wall = time.monotonic() - started
    result = figures.count(stack.database_url, "extraction-kill", ids, wall, orphan_parser_exited=orphan_gone,
                           orphan_held_after_its_pool_died=orphan_held,
                           claimed_with_the_killed_documents=len(stuck) - 2,
                           slow_documents={"a": state_of(stack.database_url, slow_a),
                                           "b": state_of(stack.database_url, slow_b)},
                           parses_of_the_slow_documents={"a": len(gate_a.held()), "b": len(gate_b.held())},
                           recovery_after_kill_s=round(time.monotonic() - killed_at, 1))
    result.write()

    assert not result.problems(), result
    assert pool_gone and new_pool != pool.pid, "the pool process did not die, or no new one took over"
    assert orphan_held, "the parser child should still be inside the document when its pool process dies"
    assert orphan_gone, "the parser child of the killed pool process kept running after its parse ended"
    assert parser_b_killed, "the parser child survived the SIGKILL of its worker's process group"
    # one 4 s lease, the sweep and a new worker's start; the old lease alone was 10 + 60 s
    assert result.details["recovery_after_kill_s"] < 45, result
    # the parses were held only until each kill, so both documents are read again in full
    assert (result.done, result.failed) == (len(ids), 0), result.failed_by_reason
    assert replacement.alive() and infer.alive()
