"""A parser child that misbehaves on request, for the sandbox tests.

Runs the real child loop (workers.extraction.child.main) with a handler that obeys a command in the first
bytes of the document, and otherwise extracts normally:
  HANG    sleep far past any timeout            SPIN     burn CPU under a 1-second RLIMIT_CPU
  KILL    SIGKILL itself                        SEGV     dereference NULL (a native crash)
  MEMORY  allocate 4 GB (under RLIMIT_AS)       EXIT     exit with status 3 without answering
  PID     answer with its own process id as the text
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


def misbehave(data: bytes, filename: str, content_type: str | None, limits) -> Extracted:
    command = data[:8].split(b" ")[0]
    if command == b"HANG":
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
