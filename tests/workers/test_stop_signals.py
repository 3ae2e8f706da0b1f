"""SIGTERM in an inference pool process: the first means 'hand back the claim after this batch', only a second
stops at once. Run in a child interpreter, so the test process's own signal handlers stay as they are."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import os, signal, time
from workers import celery_app
from workers.inference import stop_requested

stops_at_once = []
signal.signal(signal.SIGTERM, lambda signum, frame: stops_at_once.append(signum))  # billiard's, standing in
celery_app._install_stop_handlers()

def deliver(signum):
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # the handler runs in the main thread between bytecodes

deliver(celery_app.STOP_SIGNAL)  # the main process's warm shutdown got there first (kill -TERM -<pgid>)
print("after STOP_SIGNAL", stop_requested.is_set(), len(stops_at_once))
deliver(signal.SIGTERM)  # this process's own SIGTERM of the same kill: still the first
print("after one SIGTERM", stop_requested.is_set(), len(stops_at_once))
deliver(signal.SIGTERM)  # a second one: stop at once
print("after two SIGTERMs", stop_requested.is_set(), len(stops_at_once))
"""


def test_only_a_second_sigterm_stops_at_once_even_after_the_stop_signal():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2],
                          env={"BROKER_URL": "redis://127.0.0.1:1/0", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-3:] == [
        "after STOP_SIGNAL True 0", "after one SIGTERM True 0", "after two SIGTERMs True 1"]
