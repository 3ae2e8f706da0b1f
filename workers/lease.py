"""Keeping a lease alive while a claim is worked on."""

from __future__ import annotations

import logging
import threading
import time

from db.jobs import heartbeat
from db.session import session_scope

log = logging.getLogger(__name__)


class LeaseHeartbeat:
    """Extends a lease every third of its length while its rows are being worked on (a background thread).

    ``lost`` turns true when the lease no longer holds any row although the work is not finished: the
    sweeper gave the rows to someone else, and whatever this worker still writes will be refused.
    """

    def __init__(self, database_url: str, lease: str, lease_seconds: float):
        self.database_url = database_url
        self.lease = lease
        self.lease_seconds = lease_seconds
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{lease}", daemon=True)

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        interval = max(self.lease_seconds / 3.0, 0.2)
        while not self._stop.wait(interval):
            started = time.monotonic()
            try:
                with session_scope(self.database_url) as session:
                    held = heartbeat(session, self.lease, self.lease_seconds)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the lease has slack for two more
                log.warning("lease heartbeat failed", exc_info=True)
                continue
            if held == 0 and not self._stop.is_set():
                # every row is finished or was taken over; callers check ``lost`` between steps
                self.lost = True
            log.debug("heartbeat %s: %d rows, %.3fs", self.lease, held, time.monotonic() - started)
