"""The sandbox: a hang, a crash or a memory bomb in the parser costs one document, never the worker."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from workers.extraction import ExtractionError, ExtractionLimits, Sandbox, SandboxUnavailable, extract
from workers.extraction import sandbox as sandbox_module

QUICK = ExtractionLimits(timeout_s=1.5)


def failure(box: Sandbox, data: bytes, limits: ExtractionLimits = QUICK) -> ExtractionError:
    with pytest.raises(ExtractionError) as caught:
        box.extract(data, "doc.html", None, limits)
    return caught.value


def served_by(box: Sandbox) -> int:
    return int(box.extract(b"PID", "pid.html", None, QUICK).text)


def test_hanging_parser_times_out_and_the_next_document_is_served(hostile_sandbox: Sandbox) -> None:
    first = served_by(hostile_sandbox)
    started = time.monotonic()
    error = failure(hostile_sandbox, b"HANG")
    assert error.code == "timeout" and "1.5-second limit" in error.message
    assert time.monotonic() - started < 5
    assert served_by(hostile_sandbox) != first  # a fresh child took over


def test_cpu_limit_stops_a_spinning_parser(hostile_sandbox: Sandbox) -> None:
    assert failure(hostile_sandbox, b"SPIN", ExtractionLimits(timeout_s=30)).code == "timeout"  # SIGXCPU


@pytest.mark.parametrize(
    ("command", "detail"), [(b"KILL", "SIGKILL"), (b"SEGV", "SIGSEGV"), (b"EXIT", "status 3")]
)
def test_dead_child_is_parser_crashed(hostile_sandbox: Sandbox, command: bytes, detail: str) -> None:
    error = failure(hostile_sandbox, command)
    assert error.code == "parser_crashed" and detail in error.message
    assert served_by(hostile_sandbox) > 0  # and the sandbox recovers


def test_memory_bomb_is_out_of_memory(hostile_sandbox: Sandbox) -> None:
    first = served_by(hostile_sandbox)
    error = failure(hostile_sandbox, b"MEMORY", ExtractionLimits(max_memory_mb=256, timeout_s=10))
    assert error.code == "out_of_memory" and "256 MB" in error.message
    assert served_by(hostile_sandbox) != first  # a child whose heap hit the limit is not reused


def test_killed_from_outside_mid_parse_is_parser_crashed(hostile_sandbox: Sandbox) -> None:
    pid = served_by(hostile_sandbox)
    killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
    killer.start()
    try:
        error = failure(hostile_sandbox, b"HANG", ExtractionLimits(timeout_s=10))
    finally:
        killer.cancel()
    assert error.code == "parser_crashed" and "SIGKILL" in error.message


def test_child_is_reused_then_recycled(hostile_command: list[str]) -> None:
    box = Sandbox(command=hostile_command, max_documents=3)
    try:
        pids = [served_by(box) for _ in range(4)]
    finally:
        box.close()
    assert pids[0] == pids[1] == pids[2] != pids[3]


def test_fast_path_reads_small_text_without_a_child(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_child() -> Sandbox:
        raise AssertionError("the sandbox was used")

    monkeypatch.setattr(sandbox_module, "default_sandbox", no_child)
    assert extract(b"# Hello\n\nworld", "a.md").text == "Hello\n\nworld"
    with pytest.raises(AssertionError):
        extract(b"<html><p>hi</p></html>", "a.html")  # HTML always goes to the child
    with pytest.raises(AssertionError):
        extract(b"x" * (sandbox_module.INPROCESS_MAX_BYTES + 1), "big.txt")


def test_default_sandbox_is_per_process() -> None:
    parent = sandbox_module.default_sandbox()
    assert sandbox_module.default_sandbox() is parent
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the forked worker must not share (or kill) its parent's child
        os.write(write_end, b"1" if sandbox_module.default_sandbox() is not parent else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read_end, 1) == b"1"
    os.close(read_end)
    os.close(write_end)


def test_extract_round_trip_through_the_real_child() -> None:
    result = extract(
        b"<html><head><title>T</title></head><body><p>Caf\xe9 cr\xe8me</p></body></html>", "a.html"
    )
    assert (result.text, result.title, result.encoding) == ("Café crème", "T", "cp1252")


@pytest.mark.parametrize(
    "program", ["import sys; sys.exit(2)", "print('not json')", "import time; time.sleep(30)"]
)
def test_child_that_cannot_start_is_not_a_verdict_on_the_document(program: str) -> None:
    box = Sandbox(command=[sys.executable, "-c", program], start_timeout_s=1)
    with pytest.raises(SandboxUnavailable):
        box.extract(b"<p>fine</p>", "a.html", None, QUICK)
    assert box.pid is None  # nothing left running


def test_gate_holds_the_parse_until_opened_then_reads_the_document(hostile_sandbox: Sandbox, tmp_path) -> None:
    from tests.extraction.hostile_child import inside, opened

    document = b"GATE " + str(tmp_path).encode() + b"\n<html><body><p>behind the gate</p></body></html>"
    answer: list = []
    limits = ExtractionLimits(timeout_s=30)
    reader = threading.Thread(target=lambda: answer.append(hostile_sandbox.extract(document, "g.html", None, limits)))
    reader.start()
    deadline = time.monotonic() + 20
    while hostile_sandbox.pid is None or not inside(tmp_path, hostile_sandbox.pid).exists():
        assert time.monotonic() < deadline, "the child never reached the gate"
        time.sleep(0.02)
    time.sleep(0.5)
    assert reader.is_alive() and not answer  # held: no answer while the gate is shut
    opened(tmp_path).touch()
    reader.join(20)
    assert answer and answer[0].text == "behind the gate"
    started = time.monotonic()  # an open gate lets the next parse straight through
    assert hostile_sandbox.extract(document, "g.html", None, QUICK).text == "behind the gate"
    assert time.monotonic() - started < 1.5


def test_default_sandbox_runs_the_child_a_test_names(monkeypatch: pytest.MonkeyPatch, hostile_command) -> None:
    monkeypatch.delenv(sandbox_module.TEST_CHILD_ENV, raising=False)
    assert sandbox_module.default_child_command() == list(sandbox_module._CHILD_COMMAND)
    monkeypatch.setenv(sandbox_module.TEST_CHILD_ENV, " ".join(hostile_command))
    monkeypatch.setattr(sandbox_module, "_default", None)
    box = sandbox_module.default_sandbox()
    try:
        assert box.command == hostile_command
        assert int(box.extract(b"PID", "pid.html", None, QUICK).text) == box.pid
    finally:
        box.close()
