"""End-to-end fixtures: real Celery worker processes on the private Redis and the session database.

Workers run ``celery -A workers.celery_app worker`` in their own process group (so a test can SIGKILL the
whole worker, pool children included) with short leases and a fast sweeper, and log to files that a
failing test prints.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from db.models import DocState, Document, Result
from db.session import session_scope
from db.versions import register_version
from leximind.messaging import worker_argv

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 90
UPLOAD_CHUNK = 100  # files per request, under the API's per-upload limit

E2E_ENV = {
    "LEXIMIND_DEVICE": "cpu",
    "LEXIMIND_LEASE_SECONDS": "4",  # a killed worker's rows come back within seconds
    "LEXIMIND_SWEEP_INTERVAL": "1",
    "LEXIMIND_WAKEUP_STALE_SECONDS": "2",
    "LEXIMIND_RETRY_BASE_SECONDS": "0.5",
    "LEXIMIND_RETRY_MAX_SECONDS": "2",
    "LEXIMIND_EXTRACT_TIMEOUT": "30",
    "LEXIMIND_TORCH_THREADS": "1",  # two cores shared by every process of the test
    "LEXIMIND_MAX_SUMMARY_TOKENS": "24",  # a random model never stops early: keep its summaries short
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def said(self, words: str) -> bool:
        """Whether the whole log holds ``words`` (a worker working off a backlog of queued sweeps writes more
        than log()'s tail in the moment after its "ready." line)."""
        return self.log_path.exists() and words in self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group: the Celery parent and its pool children."""
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 15) -> None:
        if not self.alive():
            return
        self.kill(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.popen.wait(10)


@dataclass
class Stack:
    database_url: str
    redis_url: str
    env: dict[str, str]
    logs: Path
    procs: list[Proc] = field(default_factory=list)

    def _spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> Proc:
        log_path = self.logs / f"{name}-{uuid.uuid4().hex[:6]}.log"
        handle = log_path.open("wb")
        popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", *args],
            cwd=REPO,
            env={**self.env, **(extra_env or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def worker(
        self, name: str, queues: str, concurrency: int = 1, *, wait: bool = True, **extra_env: str
    ) -> Proc:
        proc = self._spawn(name, worker_argv(queues, concurrency, name), extra_env)
        if wait:
            self.wait_ready(proc)
        return proc

    def wait_ready(self, *procs: Proc) -> None:
        for proc in procs:
            wait_for(
                lambda p=proc: p.said("ready.") or not p.alive(),
                STARTUP_TIMEOUT_S,
                f"{proc.name} to start",
                self,
            )
            assert proc.alive(), f"{proc.name} exited:\n{proc.log()}"

    def beat(self) -> Proc:
        return self._spawn("beat", ["beat", "-l", "info"])

    def dump_logs(self) -> str:
        return "\n\n".join(
            f"===== {p.name} ({'alive' if p.alive() else p.popen.returncode})\n{p.log()}" for p in self.procs
        )

    def counts(self) -> dict[str, int]:
        with session_scope(self.database_url) as session:
            return dict(session.execute(select(Document.state, func.count()).group_by(Document.state)).all())

    def results_per_document(self) -> dict[int, int]:
        with session_scope(self.database_url) as session:
            return dict(
                session.execute(select(Result.document_id, func.count()).group_by(Result.document_id)).all()
            )


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    stack: Stack | None = None,
    interval: float = 0.2,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    details = stack.dump_logs() if stack else ""
    counts = stack.counts() if stack else {}
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; documents by state: {counts}\n{details}")


def all_finished(stack: Stack, total: int) -> Callable[[], bool]:
    def check() -> bool:
        counts = stack.counts()
        return counts.get(DocState.DONE.value, 0) + counts.get(DocState.FAILED.value, 0) >= total

    return check


@pytest.fixture(scope="session")
def tiny_artifact(artifacts_dir: Path) -> Path:
    """A tiny random model whose heads count as trained.

    Untrained heads mean zero-shot prompting, which costs a minute and more per long document on a CPU;
    these tests are about the job system, so labels come from the (random) heads.
    """
    from model.artifacts import create_random_artifact, load_artifact, save_artifact

    folder = artifacts_dir / "e2e-tiny-heads"
    if not folder.exists():
        random = load_artifact(
            create_random_artifact(artifacts_dir / f"e2e-tiny-{uuid.uuid4().hex[:6]}", seed=0)
        )
        save_artifact(folder, random.model, random.tokenizer, {**random.labels, "heads_trained": True}, {})
    return folder


@contextmanager
def running_stack(database_url: str, redis_url: str, artifact: Path, tmp_path: Path) -> Iterator[Stack]:
    """A Stack on these servers with ``artifact`` as the active model; stops every process it started."""
    with session_scope(database_url) as session:
        register_version(session, path=str(artifact), source="import", activate=True)
    env = {
        **os.environ,
        **E2E_ENV,
        "DATABASE_URL": database_url,
        "BROKER_URL": redis_url,
        "LEXIMIND_DATA_DIR": str(tmp_path / "data"),
        "LEXIMIND_MODELS_DIR": str(tmp_path / "models"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    stack = Stack(database_url, redis_url, env, logs)
    try:
        yield stack
    finally:
        for proc in stack.procs:
            proc.stop()


@pytest.fixture()
def stack(clean_db: str, redis_url: str, tiny_artifact: Path, tmp_path: Path) -> Iterator[Stack]:
    pytest.importorskip(
        "model.pipeline", reason="the inference pipeline (model/pipeline.py) is not there yet"
    )
    redis.Redis.from_url(redis_url).flushall()
    with running_stack(clean_db, redis_url, tiny_artifact, tmp_path) as stack:
        yield stack


@pytest.fixture()
def owner(clean_db: str) -> tuple[int, str]:
    """A user and an API token for them."""
    from db.accounts import create_user, issue_token

    with session_scope(clean_db) as session:
        user = create_user(session, "e2e@example.com", "correct horse battery")
        return user.id, issue_token(session, user.id, "e2e").secret


@pytest.fixture()
def api(clean_db: str, redis_url: str):
    """The web app's test client (the real /api/v1 routes), or None where the web app is not installed."""
    try:
        from webapp import create_app
    except ImportError:
        return None
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "e2e",
            "DATABASE_URL": clean_db,
            "BROKER_URL": redis_url,
            "SESSION_COOKIE_SECURE": False,
            "REMEMBER_COOKIE_SECURE": False,
            "UPLOAD_RATE_LIMIT": "10000 per minute",
        }
    )
    return app.test_client()


def upload(
    stack: Stack, api, owner: tuple[int, str], files: list[tuple[str, bytes]]
) -> tuple[int, list[int]]:
    """Upload through POST /api/v1/documents (or db.uploads where the web app is absent).

    Returns the first job's id and every document id."""
    owner_id, token = owner
    if api is not None:
        job_id, ids = None, []
        for start in range(0, len(files), UPLOAD_CHUNK):
            chunk = files[start : start + UPLOAD_CHUNK]
            response = api.post(
                "/api/v1/documents",
                headers={"Authorization": f"Bearer {token}"},
                data={"files": [(io.BytesIO(data), name) for name, data in chunk]},
                content_type="multipart/form-data",
            )
            assert response.status_code == 202, response.get_data(as_text=True)
            body = response.get_json()
            job_id = job_id or body["job_id"]
            ids += [d["id"] for d in body["documents"]]
        return job_id, ids
    from db.uploads import UploadedFile, create_job
    from leximind.messaging import make_celery, wake_extract

    with session_scope(stack.database_url) as session:
        job, docs = create_job(session, owner_id, [UploadedFile(name, data) for name, data in files])
        ids = [d.id for d in docs]
    wake_extract(make_celery(stack.redis_url), ids)
    return job.id, ids
