"""A parser child that misbehaves on request, for the sandbox tests.

Runs the real child loop (workers.extraction.child.main) with a handler that obeys a command in the first
bytes of the document, and otherwise extracts normally:
  HANG    sleep far past any timeout            SPIN     burn CPU under a 1-second RLIMIT_CPU
  KILL    SIGKILL itself                        SEGV     dereference NULL (a native crash)
  MEMORY  allocate 4 GB (under RLIMIT_AS)       EXIT     exit with status 3 without answering
  PID     answer with its own process id as the text
  GATE <folder>\n<document>   hold the parse until the test opens the gate, then read <document> normally:
          write <folder>/inside-<pid> (this child is now inside the parse of that document), wait without
          using CPU until <folder>/open exists, then extract what follows the first line. A parse that lasts
          exactly as long as the test wants, whatever the machine's load (tests/faults/test_extraction_kill.py
          runs real workers with this child through LEXIMIND_TEST_EXTRACTION_CHILD)
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: make the repo importable

from workers.extraction import child  # noqa: E402
from workers.extraction.core import extract_in_process  # noqa: E402
from workers.extraction.result import Extracted  # noqa: E402

GATE_LIMIT_S = 600  # a gate nobody opens (a test that died) lets the parse go on after this long


def inside(folder: Path, pid: int) -> Path:
    """The file a child held at the gate in ``folder`` writes (its content is its process id)."""
    return folder / f"inside-{pid}"


def opened(folder: Path) -> Path:
    """The file that opens the gate in ``folder``."""
    return folder / "open"


def gate(data: bytes) -> bytes:
    """Wait at the gate named on the first line; return the document that follows it."""
    first, _, document = data.partition(b"\n")
    folder = Path(first.split(b" ", 1)[1].strip().decode())
    marker = inside(folder, os.getpid())
    partial = folder / f".{marker.name}"
    partial.write_text(str(os.getpid()))
    partial.rename(marker)  # seen whole or not at all
    deadline = time.monotonic() + GATE_LIMIT_S
    while not opened(folder).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return document


def misbehave(data: bytes, filename: str, content_type: str | None, limits) -> Extracted:
    command = data[:8].split(b" ")[0]
    if command == b"GATE":
        data = gate(data)
    elif command == b"HANG":
        time.sleep(3600)
    elif command == b"SPIN":
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = int(usage.ru_utime + usage.ru_stime)
        resource.setrlimit(resource.RLIMIT_CPU, (used + 1, resource.getrlimit(resource.RLIMIT_CPU)[1]))
        while True:
            pass
    elif command == b"KILL":
        os.kill(os.getpid(), signal.SIGKILL)
    elif command == b"SEGV":
        ctypes.string_at(0)
    elif command == b"MEMORY":
        hog = bytearray(4 * 1024**3)
        return Extracted(str(len(hog)), None, None, "txt", None)
    elif command == b"EXIT":
        os._exit(3)
    elif command == b"PID":
        return Extracted(str(os.getpid()), None, None, "txt", None)
    return extract_in_process(data, filename, content_type, limits)


if __name__ == "__main__":
    sys.exit(child.main(handler=misbehave))
