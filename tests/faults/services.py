"""Private Redis and PostgreSQL servers that a fault test may kill and restart.

Never the machine's shared servers: each of these runs under the test's own temporary folder, on its own
loopback port (Redis) or socket folder (PostgreSQL, from the binaries the ``pgserver`` package ships).
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from leximind.services import free_port, port_open, start_embedded_redis


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


class PrivateRedis:
    """A redis-server without persistence: stopping it loses every message it held."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = start_embedded_redis(data_dir, port=self.port)

    @property
    def pid(self) -> int | None:
        pid_file = self.data_dir / "redis" / "redis.pid"
        return int(pid_file.read_text().strip()) if pid_file.exists() else None

    def kill(self) -> None:
        """SIGKILL: nothing is saved, clients see their connections drop."""
        pid = self.pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _wait(lambda: not port_open("127.0.0.1", self.port), 10, "Redis to stop")
        (self.data_dir / "redis" / "redis.pid").unlink(missing_ok=True)

    def start(self) -> None:
        """A fresh, empty server on the same port."""
        assert start_embedded_redis(self.data_dir, port=self.port) == self.url

    def stop(self) -> None:
        if port_open("127.0.0.1", self.port):
            self.kill()


class PrivatePostgres:
    """A PostgreSQL cluster of our own (pgserver's binaries), listening on a private socket folder."""

    def __init__(self, data_dir: Path):
        import pgserver

        self.pgdata = data_dir / "pg"
        self.pgdata.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        self.admin_url = server.get_uri()
        self.user = server.system_user  # pgserver runs postgres as an unprivileged user when we are root
        self.socket_dir = parse_qs(urlparse(self.admin_url).query)["host"][0]

    def _pg_ctl(self, *args: str, timeout: float = 30) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.pgdata, user=self.user, timeout=timeout)

    def crash(self) -> None:
        """Immediate shutdown: every connection drops, open transactions are lost, recovery runs at start."""
        self._pg_ctl("-w", "-m", "immediate", "stop")

    def start(self) -> None:
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.pgdata / "log"), "start")

    def running(self) -> bool:
        import subprocess

        try:
            self._pg_ctl("status", timeout=10)
        except subprocess.CalledProcessError:
            return False
        return True

    def start_if_stopped(self) -> None:
        """After a test that failed between crash() and start()."""
        if not self.running():
            self.start()

    def stop(self) -> None:
        try:
            self._pg_ctl("-w", "-m", "fast", "stop")
        except Exception:  # noqa: BLE001 - already stopped
            pass
