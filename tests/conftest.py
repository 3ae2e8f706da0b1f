"""Shared fixtures: a real PostgreSQL database built by the migrations, and a real Redis.

PostgreSQL: the server on 127.0.0.1:5432 when one is running (started through pg_ctlcluster when it is
installed but stopped), else an embedded one (pgserver). Each test session gets its own database.
Redis: a private redis-server process on a free loopback port, so tests can restart or flush it freely.
"""
from __future__ import annotations

import glob
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from db.migrate import upgrade
from db.models import Base
from db.session import dispose_all, normalize_url
from leximind.config import SHARED_DATA
from leximind.services import port_open, start_embedded_postgres, start_embedded_redis

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _local_postgres_admin_url() -> str | None:
    if not port_open("127.0.0.1", 5432) and glob.glob("/etc/postgresql/*"):
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                       check=False, capture_output=True)
    if port_open("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"shared data folder not found at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory) -> str:
    url = os.environ.get("TEST_DATABASE_ADMIN_URL") or _local_postgres_admin_url()
    if url is None:
        url = start_embedded_postgres(tmp_path_factory.mktemp("pg"))
    return url


@contextmanager
def migrated_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new database on the server of ``admin_url``, built by `alembic upgrade head`, dropped on exit.

    Also the fault tests' (tests/faults/conftest.py), on a private server they may crash and restart: the
    admin connection is pinged before use."""
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    dispose_all()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database for this test session, built by `alembic upgrade head`."""
    with migrated_database(pg_admin_url, "lm_test_") as url:
        yield url


@pytest.fixture()
def clean_db(database_url: str) -> str:
    """The session database with every table emptied."""
    engine = create_engine(normalize_url(database_url))
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return database_url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A private, real Redis server for this test session."""
    data_dir = tmp_path_factory.mktemp("redis")
    url = start_embedded_redis(data_dir)
    yield url
    pid_file = data_dir / "redis" / "redis.pid"
    if pid_file.exists():
        subprocess.run(["kill", pid_file.read_text().strip()], check=False)
