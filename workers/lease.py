"""Heartbeats: keeping a lease (or a training run) visibly alive while the work runs."""

from __future__ import annotations

import logging
import threading
import time

from db.leases import heartbeat
from db.session import session_scope

log = logging.getLogger(__name__)


class Heartbeat:
    """Calls :meth:`beat` every ``interval_s`` on a background thread while the ``with`` block runs.

    A beat that raises is logged and tried again at the next interval (the timeouts leave slack for that).
    """

    def __init__(self, interval_s: float, name: str):
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def beat(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a missed beat is retried; the timeouts have slack for two more
                log.warning("%s failed", self._thread.name, exc_info=True)


class LeaseHeartbeat(Heartbeat):
    """Extends a lease every third of its length while its rows are being worked on.

    ``lost`` turns true when the lease no longer holds any row although the work is not finished: the
    sweeper gave the rows to someone else, and whatever this worker still writes will be refused.
    """

    def __init__(self, database_url: str, lease: str, lease_seconds: float):
        super().__init__(max(lease_seconds / 3.0, 0.2), f"heartbeat-{lease}")
        self.database_url = database_url
        self.lease = lease
        self.lease_seconds = lease_seconds
        self.lost = False

    def beat(self) -> None:
        started = time.monotonic()
        with session_scope(self.database_url) as session:
            held = heartbeat(session, self.lease, self.lease_seconds)
        if held == 0 and not self.stopping:
            # every row is finished or was taken over; callers check ``lost`` between steps
            self.lost = True
        log.debug("heartbeat %s: %d rows, %.3fs", self.lease, held, time.monotonic() - started)
