"""extract(): parse in a child process so that a hang, a crash or a memory bomb cannot take the worker down.

Design
- One long-lived child per worker process (``python -m workers.extraction.child``), fed over pipes: a JSON
  header line plus the raw bytes in, one JSON line out. No pickle. Starting an interpreter and importing
  pypdf/bs4/python-docx costs ~0.3 s, so the child is reused for up to ``max_documents`` documents, then
  replaced (this also bounds heap growth and fragmentation).
- Limits: the worker enforces the wall clock (``timeout_s``) and SIGKILLs a child that overruns it; the child
  sets RLIMIT_AS (``max_memory_mb``) and RLIMIT_CPU around each document (child.py).
- Start: the child greets with a JSON line once it can serve; a child that cannot start raises
  ``SandboxUnavailable`` (a RuntimeError, not an ExtractionError: no verdict on the document, retry later).
- Failures: overrun -> ``timeout``; killed by SIGXCPU -> ``timeout``; any other death (signal, native crash,
  non-zero exit, garbled reply) -> ``parser_crashed``; ``out_of_memory`` comes back as an answer. After any of
  these the child is replaced, so the next document starts clean.
- Fast path: plain text and Markdown up to ``INPROCESS_MAX_BYTES`` are read in the calling process. Their
  readers are decoding plus linear-time regular expressions (no parser that can loop or blow up), and a
  round trip to the child would cost more than the work. PDF, DOCX and HTML always go to the child.
- Safe across fork (Celery prefork): the default sandbox belongs to the process that made it; a forked
  process makes its own. One document at a time per sandbox (a lock serialises threads).
- Tests only: ``LEXIMIND_TEST_EXTRACTION_CHILD`` (a command line) replaces the default sandbox's child
  program, so a fault test can hold a real worker's parser inside a document for as long as it needs
  (tests/extraction/hostile_child.py). Unset, which is the only production setting, nothing changes.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import selectors
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .core import check_size, extract_in_process
from .detect import detect_format
from .errors import ExtractionError
from .result import Extracted, ExtractionLimits, timeout_message

log = logging.getLogger(__name__)

INPROCESS_MAX_BYTES = 1024 * 1024
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds workers/
_CHILD_COMMAND = (sys.executable, "-m", "workers.extraction.child")
_IO_CHUNK = 1 << 16


def extract(
    data: bytes, filename: str, content_type: str | None = None, limits: ExtractionLimits | None = None
) -> Extracted:
    """Extract text with the parser isolated in a child process; raises ExtractionError on any failure."""
    limits = limits or ExtractionLimits()
    check_size(data, limits)
    if len(data) <= INPROCESS_MAX_BYTES and detect_format(data, filename, content_type) in ("txt", "md"):
        return extract_in_process(data, filename, content_type, limits)
    return default_sandbox().extract(data, filename, content_type, limits)


class SandboxUnavailable(RuntimeError):
    """The parser child could not be started: a fault of this machine or deployment, not of the document."""


class _ChildGone(Exception):
    """The child closed its end of the pipes (it exited or was killed)."""


class _Overrun(Exception):
    """The child did not answer within the wall-clock limit."""


class Sandbox:
    """A reusable parser child. ``command`` replaces the child program (tests use a misbehaving one)."""

    def __init__(
        self, command: Sequence[str] = _CHILD_COMMAND, max_documents: int = 200, start_timeout_s: float = 30.0
    ) -> None:
        self.command = list(command)
        self.max_documents = max_documents
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._served = 0
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def extract(
        self, data: bytes, filename: str, content_type: str | None, limits: ExtractionLimits
    ) -> Extracted:
        header = {
            "filename": filename,
            "content_type": content_type,
            "limits": limits.to_dict(),
            "size": len(data),
        }
        request = json.dumps(header).encode() + b"\n" + data
        with self._lock:
            reply = self._round_trip(request, limits)
        if reply.get("ok") is True:
            return Extracted.from_dict(reply["result"])
        error = reply.get("error") or {}
        if error.get("code") == "out_of_memory":
            with self._lock:
                self._stop()  # a heap that hit its limit is not one to reuse
        raise ExtractionError(error.get("code", "parser_crashed"), error.get("message", "No message."))

    def start(self) -> None:
        """Start the child now rather than on the first document (e.g. in worker_process_init)."""
        with self._lock:
            self._ensure_child()

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _round_trip(self, request: bytes, limits: ExtractionLimits) -> dict:
        proc = self._ensure_child()
        try:
            raw = _exchange(proc, request, limits.timeout_s)
        except _Overrun:
            log.warning("extraction child %d overran %.1f s; killing it", proc.pid, limits.timeout_s)
            self._kill()
            raise ExtractionError("timeout", timeout_message(limits.timeout_s)) from None
        except _ChildGone:
            raise self._death_error(limits) from None
        self._served += 1
        if self._served >= self.max_documents:
            self._stop()
        try:
            reply = json.loads(raw)
            if not isinstance(reply, dict):
                raise ValueError("reply is not an object")
            return reply
        except ValueError as exc:
            self._kill()
            raise ExtractionError(
                "parser_crashed", _crash_message(f"it sent a garbled answer ({exc})")
            ) from exc

    def _ensure_child(self) -> subprocess.Popen[bytes]:
        if self._proc is not None:
            if self._proc.poll() is None:
                return self._proc
            _close_pipes(self._proc)  # it died while idle (killed from outside): replace it
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            cwd=_PACKAGE_ROOT,
            close_fds=True,
        )
        os.set_blocking(self._proc.stdin.fileno(), False)
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._served = 0
        try:
            hello = json.loads(_exchange(self._proc, b"", self.start_timeout_s))
            if hello.get("ready") is not True:
                raise ValueError(f"unexpected greeting {hello!r}")
        except (_Overrun, _ChildGone, ValueError, AttributeError) as exc:
            self._kill()
            # Not a verdict on any file: the caller should retry later (extract_step does, with backoff).
            raise SandboxUnavailable(f"the extraction child {self.command} did not start ({exc!r})") from exc
        return self._proc

    def _death_error(self, limits: ExtractionLimits) -> ExtractionError:
        proc, self._proc = self._proc, None
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # closed its pipes but lingers: make sure it is gone
            proc.kill()
            code = proc.wait()
        _close_pipes(proc)
        if code == -signal.SIGXCPU:
            return ExtractionError("timeout", timeout_message(limits.timeout_s))
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (usually: it ran out of memory)" if code == -signal.SIGKILL else ""
            log.warning("extraction child %d died from %s", proc.pid, name)
            return ExtractionError("parser_crashed", _crash_message(f"it was stopped by {name}{hint}"))
        log.warning("extraction child %d exited with status %d", proc.pid, code)
        return ExtractionError("parser_crashed", _crash_message(f"it exited with status {code}"))

    def _stop(self) -> None:
        """Ask the child to finish (close its stdin); kill it if it does not."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        _close_pipes(proc)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            _close_pipes(proc)


def _exchange(proc: subprocess.Popen[bytes], request: bytes, timeout_s: float) -> bytes:
    """Write the request (if any) and read one reply line, never blocking past the deadline."""
    deadline = time.monotonic() + timeout_s
    pending = memoryview(request)
    reply = bytearray()
    with selectors.DefaultSelector() as selector:
        if pending:
            selector.register(proc.stdin, selectors.EVENT_WRITE)
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Overrun
            for key, _ in selector.select(remaining):
                if key.fileobj is proc.stdin:
                    try:
                        written = os.write(proc.stdin.fileno(), pending[:_IO_CHUNK])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        selector.unregister(proc.stdin)  # the child died; reading will see EOF
                        continue
                    pending = pending[written:]
                    if not pending:
                        selector.unregister(proc.stdin)
                    continue
                try:
                    chunk = os.read(proc.stdout.fileno(), _IO_CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise _ChildGone
                reply += chunk
                if reply.endswith(b"\n"):
                    return bytes(reply)


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass


def _crash_message(detail: str) -> str:
    return (
        f"The program that reads this file stopped unexpectedly: {detail}. The file is probably damaged or "
        "unusual; open it on your computer, save it again (or export it as PDF) and upload the new copy."
    )


_default: tuple[int, Sandbox] | None = None
_default_lock = threading.Lock()
TEST_CHILD_ENV = "LEXIMIND_TEST_EXTRACTION_CHILD"


def default_child_command() -> list[str]:
    """The child program of the default sandbox: ours, unless a test names another (see the module notes)."""
    override = os.environ.get(TEST_CHILD_ENV, "").strip()
    return shlex.split(override) if override else list(_CHILD_COMMAND)


def default_sandbox() -> Sandbox:
    """The sandbox of this process (a forked process gets its own, leaving its parent's child alone)."""
    global _default
    with _default_lock:
        if _default is None or _default[0] != os.getpid():
            _default = (os.getpid(), Sandbox(command=default_child_command()))
        return _default[1]


@atexit.register
def _close_default_sandbox() -> None:
    if _default is not None and _default[0] == os.getpid():
        _default[1].close()
