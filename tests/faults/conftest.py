"""Fault-test fixtures: the e2e harness (tests/e2e/conftest.py) on servers of our own that tests may kill.

Each test gets a fresh database on a private PostgreSQL cluster (shared by the fault tests, restartable
without touching the machine's server on :5432), a private Redis it may kill, the quick tiny model
(tests/faults/quick_model.py), and the real web app's test client for uploads through /api/v1.
"""
from __future__ import annotations

import csv
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.session import dispose_all
from tests.conftest import migrated_database
from tests.e2e.conftest import Stack, running_stack
from tests.faults.quick_model import create_quick_artifact
from tests.faults.services import PrivatePostgres, PrivateRedis
from tests.web.conftest import _person as make_person
from tests.web.conftest import alice, app, app_factory, make_config  # noqa: F401  (the web tests' fixtures)

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
    """A fresh database on the private cluster, built by the migrations (the top-level helper)."""
    private_pg.start_if_stopped()
    with migrated_database(private_pg.admin_url, "lm_fault_") as url:
        yield url
        private_pg.start_if_stopped()  # a test may leave it stopped; it must run for the drop


@pytest.fixture()
def fault_stack(fault_db: str, private_redis: PrivateRedis, quick_artifact: Path, tmp_path: Path) -> Iterator[Stack]:
    """The e2e harness's Stack on the private servers, with the quick model active."""
    pytest.importorskip("model.pipeline", reason="the inference pipeline (model/pipeline.py) is not there yet")
    with running_stack(fault_db, private_redis.url, quick_artifact, tmp_path) as stack:
        yield stack


@pytest.fixture()
def fault_owner(fault_db: str) -> tuple[int, str]:
    """A user and an API token for them (the web tests' helper)."""
    person = make_person(fault_db, FAULTS_EMAIL)
    return person.id, person.token


@pytest.fixture()
def fault_api(fault_db: str, private_redis: PrivateRedis):
    """The real web app (its /api/v1 routes) over the private servers, with the web tests' settings."""
    from webapp import create_app

    web = create_app(make_config(fault_db, private_redis.url, UPLOAD_RATE_LIMIT="100000 per minute"))
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
