"""The parser child: ``python -m workers.extraction.child``.

Serves one request after another until stdin closes (the worker went away). JSON only, never pickle.

Start:    the child announces itself with one JSON line {"ready": true, "pid"} once it can serve.

Request:  one JSON line {"filename", "content_type", "limits", "size"} followed by exactly ``size`` raw bytes.
Response: one JSON line {"ok": true, "result": {Extracted}} or {"ok": false, "error": {"code", "message"}}.

Around each document the child lowers its own address-space limit (RLIMIT_AS = max_memory_mb) and sets a
CPU-time limit (RLIMIT_CPU = timeout_s + 1 s beyond what it has used), then lifts both again so that it can
always write its answer. The worker adds the wall-clock limit from outside (sandbox.py).
"""

from __future__ import annotations

import faulthandler
import json
import logging
import math
import os
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

from .core import extract_in_process, out_of_memory
from .errors import ExtractionError
from .result import Extracted, ExtractionLimits

try:
    import resource
except ImportError:  # not on Windows; there the wall-clock limit is the only one
    resource = None  # type: ignore[assignment]

Handler = Callable[..., Extracted]  # same signature as extract_in_process


def main(handler: Handler = extract_in_process) -> int:
    faulthandler.enable()  # a native crash leaves a Python traceback on stderr, in the worker's log
    # Errors only on stderr: what parsers warn about a file comes back in Extracted.warnings instead.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="extraction child: %(message)s")
    logging.getLogger().handlers[0].setLevel(logging.ERROR)
    requests = sys.stdin.buffer
    # Keep a private handle on the real stdout and point fd 1 at stderr, so that nothing a library prints
    # (from Python or C) can corrupt the protocol.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if resource is not None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash on hostile input must not dump core
    _reply(replies, {"ready": True, "pid": os.getpid()})  # tells the worker the child can serve
    while True:
        header = requests.readline()
        if not header:
            return 0
        request = json.loads(header)
        data = requests.read(request["size"])
        if len(data) != request["size"]:
            return 1  # the worker closed the pipe mid-request
        limits = ExtractionLimits.from_dict(request["limits"])
        _reply(replies, _serve(handler, data, request["filename"], request["content_type"], limits))


def _reply(replies: BinaryIO, message: dict[str, Any]) -> None:
    replies.write(json.dumps(message, ensure_ascii=False).encode("utf-8", "replace") + b"\n")
    replies.flush()


def _serve(
    handler: Handler, data: bytes, filename: str, content_type: str | None, limits: ExtractionLimits
) -> dict[str, Any]:
    try:
        with _ResourceLimits(limits):
            result = handler(data, filename, content_type, limits)
        return {"ok": True, "result": result.to_dict()}
    except ExtractionError as exc:
        return {"ok": False, "error": exc.to_dict()}
    except MemoryError:
        return {"ok": False, "error": out_of_memory(limits).to_dict()}


class _ResourceLimits:
    """RLIMIT_AS and RLIMIT_CPU for the duration of one document (soft limits; the hard ones stay)."""

    def __init__(self, limits: ExtractionLimits) -> None:
        self.memory = limits.max_memory_mb * 1024 * 1024
        self.cpu_seconds = math.ceil(limits.timeout_s) + 1
        self.saved: dict[int, tuple[int, int]] = {}

    def __enter__(self) -> None:
        if resource is None:
            return
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = math.ceil(usage.ru_utime + usage.ru_stime)
        self._lower(resource.RLIMIT_CPU, used + self.cpu_seconds)
        self._lower(resource.RLIMIT_AS, self.memory)

    def __exit__(self, *exc: object) -> None:
        for which, previous in self.saved.items():
            resource.setrlimit(which, previous)

    def _lower(self, which: int, soft: int) -> None:
        previous = resource.getrlimit(which)
        hard = previous[1]
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))
        self.saved[which] = previous


if __name__ == "__main__":
    sys.exit(main())
