"""Fault-test fixtures: the e2e harness (tests/e2e/conftest.py) on servers of our own that tests may kill.

Each test gets a fresh database on a private PostgreSQL cluster (shared by the fault tests, restartable
without touching the machine's server on :5432), a private Redis it may kill, the quick tiny model
(tests/faults/quick_model.py), and the real web app's test client for uploads through /api/v1.
"""
from __future__ import annotations

import csv
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from db.migrate import upgrade
from db.session import dispose_all, normalize_url, session_scope
from tests.e2e.conftest import Stack, running_stack
from tests.faults.quick_model import create_quick_artifact
from tests.faults.services import PrivatePostgres, PrivateRedis
from tests.web.conftest import PASSWORD, alice, app, app_factory  # noqa: F401  (the web tests' fixtures)

FAULTS_EMAIL = "faults@example.com"


@pytest.fixture(scope="session")
def quick_artifact(artifacts_dir: Path) -> Path:
    return create_quick_artifact(artifacts_dir / "faults-quick-tiny")


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    # not under pytest's temporary folder: that one is private to root, and postgres runs as another user
    folder = Path(tempfile.mkdtemp(prefix="leximind-faults-pg-"))
    folder.chmod(0o755)
    server = PrivatePostgres(folder)
    yield server
    dispose_all()
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis-data")
    yield server
    server.stop()


@pytest.fixture()
def fault_db(private_pg: PrivatePostgres) -> Iterator[str]:
    """A fresh database on the private cluster, built by the migrations."""
    private_pg.start_if_stopped()
    name = f"lm_fault_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalize_url(private_pg.admin_url), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    dispose_all()
    private_pg.start_if_stopped()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture()
def fault_stack(fault_db: str, private_redis: PrivateRedis, quick_artifact: Path, tmp_path: Path) -> Iterator[Stack]:
    """The e2e harness's Stack on the private servers, with the quick model active."""
    pytest.importorskip("model.pipeline", reason="the inference pipeline (model/pipeline.py) is not there yet")
    with running_stack(fault_db, private_redis.url, quick_artifact, tmp_path) as stack:
        yield stack


@pytest.fixture()
def fault_owner(fault_db: str) -> tuple[int, str]:
    from db.accounts import create_user, issue_token

    with session_scope(fault_db) as session:
        user = create_user(session, FAULTS_EMAIL, PASSWORD)
        return user.id, issue_token(session, user.id, "faults").secret


@pytest.fixture()
def fault_api(fault_db: str, private_redis: PrivateRedis):
    """The real web app (its /api/v1 routes) over the private servers."""
    from webapp import create_app

    web = create_app({
        "TESTING": True, "SECRET_KEY": "faults-" + uuid.uuid4().hex, "DATABASE_URL": fault_db,
        "BROKER_URL": private_redis.url, "SESSION_COOKIE_SECURE": False, "REMEMBER_COOKIE_SECURE": False,
        "UPLOAD_RATE_LIMIT": "100000 per minute",
    })
    return web.test_client()


def news_documents(shared_data: Path, n: int, tag: str) -> list[tuple[str, bytes]]:
    """n small, distinct text documents: AG News headline + description (shared/data/topic/ag_news)."""
    rows: list[tuple[str, bytes]] = []
    with (shared_data / "topic" / "ag_news" / "test.csv").open(encoding="utf-8", newline="") as handle:
        for _, title, description in csv.reader(handle):
            body = f"{title}\n\n{description.replace(chr(92), ' ')}\n\n({tag} {len(rows)})"
            rows.append((f"{tag}-{len(rows):05d}.txt", body.encode()))
            if len(rows) == n:
                break
    return rows
