"""The production shape's parts that need no worker: metrics from Postgres, redacting JSON logs, retention."""
from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from werkzeug.test import Client

from db.accounts import create_user
from db.models import Blob, DocState, Document, Feedback, Job, Result
from db.retention import RetentionPolicy, purge
from db.session import session_scope
from db.uploads import UploadedFile, create_job
from db.versions import register_version
from leximind.logging_setup import REDACTED, configure_logging, known_secrets, redact
from leximind.metrics import MetricsMiddleware


@pytest.fixture()
def owner_and_version(clean_db: str) -> tuple[int, int]:
    with session_scope(clean_db) as session:
        owner = create_user(session, "ops@example.com", "correct horse battery").id
        version = register_version(session, path="/models/ops", source="import", activate=True).id
    return owner, version


def seed(database_url: str, owner_and_version: tuple[int, int], states: dict[str, int], *,
         finished_days_ago: float = 0.0, batch_sizes: tuple[int, ...] = ()) -> list[int]:
    """Documents in the given states; the first done ones get results written in batches of ``batch_sizes``."""
    owner, version_id = owner_and_version
    names = [f"ops-{state}-{finished_days_ago}-{i}.txt" for state, n in states.items() for i in range(n)]
    with session_scope(database_url) as session:
        _, docs = create_job(session, owner, [UploadedFile(name, name.encode()) for name in names])
        ids = [d.id for d in docs]
    by_state: dict[str, list[int]] = {}
    rest = iter(ids)
    for state, n in states.items():
        by_state[state] = [next(rest) for _ in range(n)]
    with session_scope(database_url) as session:
        for state, chosen in by_state.items():
            values: dict = {"state": state}
            if state in (DocState.DONE.value, DocState.FAILED.value):
                values["finished_at"] = datetime.now(UTC) - timedelta(days=finished_days_ago)
            if state == DocState.FAILED.value:
                values |= {"error_code": "corrupt_file", "error_message": "The file is damaged."}
            if state in (DocState.PROCESSING.value, DocState.EXTRACTING.value):
                values |= {"lease_owner": "gone/1", "lease_expires_at": datetime.now(UTC) - timedelta(minutes=1)}
            session.execute(update(Document).where(Document.id.in_(chosen)).values(**values))
    done = by_state.get(DocState.DONE.value, [])
    for size in batch_sizes:  # one transaction per batch, as the inference loop writes them
        batch, done = done[:size], done[size:]
        with session_scope(database_url) as session:
            session.add_all(Result(document_id=i, model_version_id=version_id, summary="s") for i in batch)
    return ids


def scrape(database_url: str, token: str | None = None, **headers: str):
    app = MetricsMiddleware(lambda environ, start: [b"not metrics"], database_url, token)
    return Client(app).get("/metrics", headers=headers)


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") and line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def test_metrics_are_read_from_postgres_at_scrape_time(clean_db, owner_and_version):
    seed(clean_db, owner_and_version, {"uploaded": 2, "queued": 3, "processing": 1, "done": 10, "failed": 2}, batch_sizes=(8, 2))
    response = scrape(clean_db)
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    body = response.get_data(as_text=True)
    for state, n in {"uploaded": 2, "extracting": 0, "queued": 3, "processing": 1, "done": 10, "failed": 2}.items():
        assert sample(body, f'leximind_documents{{state="{state}"}}') == n
    assert sample(body, 'leximind_documents_failed{code="corrupt_file"}') == 2
    assert sample(body, 'leximind_documents_finished_recent{state="done"}') == 10
    assert sample(body, "leximind_documents_per_second") == pytest.approx(12 / 300)
    assert sample(body, "leximind_expired_leases") == 1
    assert sample(body, 'leximind_recent_batch_size_bucket{le="2"}') == 1  # the batch of 2
    assert sample(body, 'leximind_recent_batch_size_bucket{le="8"}') == 2  # and the batch of 8
    assert sample(body, "leximind_recent_batch_size_gsum") == 10
    assert 'leximind_active_model_info{id="' in body and 'version="' in body
    assert sample(body, 'leximind_oldest_waiting_seconds{state="queued"}') >= 0


def test_metrics_token_and_outage(clean_db):
    assert scrape(clean_db, token="s3cret-scrape-token").status_code == 401
    assert scrape(clean_db, token="s3cret-scrape-token", Authorization="Bearer s3cret-scrape-token").status_code == 200
    other = Client(MetricsMiddleware(lambda e, s: (s("200 OK", []), [b"app"])[1], clean_db)).get("/api/v1/x")
    assert other.get_data() == b"app"
    down = scrape("postgresql://nobody@127.0.0.1:1/none")
    assert down.status_code == 503 and b"database did not answer" in down.get_data()


def test_logs_are_json_lines_without_secrets(monkeypatch):
    secret_key = "very-secret-flask-key-0123456789"
    monkeypatch.setenv("SECRET_KEY", secret_key)
    monkeypatch.setenv("DATABASE_URL", "postgresql://leximind:Db%40Passw0rd!@db:5432/leximind")
    monkeypatch.setenv("LEXIMIND_LOG_FORMAT", "json")
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("test", stream=stream)
        log = logging.getLogger("leximind.test")
        token = "lm_" + "A" * 43
        log.info("token %s used; header Authorization: Bearer %s", token, "abc.def-ghi")
        log.warning("connecting to %s", "redis://:R3disPassword@redis:6379/0", extra={"document_id": 7})
        log.info("form password=hunter2hunter2&email=a@b.c and the key %s", secret_key)
        try:
            raise RuntimeError(f"failed with postgresql://leximind:Db%40Passw0rd!@db/leximind and {secret_key}")
        except RuntimeError:
            log.exception("crash")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [entry["level"] for entry in lines] == ["INFO", "WARNING", "INFO", "ERROR"]
    assert {"ts", "level", "logger", "service", "pid", "message"} <= set(lines[0])
    assert lines[1]["document_id"] == 7 and lines[0]["service"] == "test"
    assert "RuntimeError" in lines[3]["exc"]
    for secret in (token, "abc.def-ghi", "R3disPassword", "hunter2hunter2", secret_key, "Db%40Passw0rd!",
                   "Db@Passw0rd!"):
        assert secret not in text, secret
    assert text.count(REDACTED) >= 7


def test_redaction_rules():
    secrets = known_secrets({"SECRET_KEY": "k" * 20, "BROKER_URL": "redis://:p%2Fss-word-1@r/0"})
    assert secrets == ["k" * 20, "p%2Fss-word-1", "p/ss-word-1"]
    assert redact("plain text, no secrets: 42 documents") == "plain text, no secrets: 42 documents"
    assert REDACTED in redact('{"password": "x1y2z3"}') and "x1y2z3" not in redact('{"password": "x1y2z3"}')
    assert redact("https://user:pw@example.com/x") == f"https://user:{REDACTED}@example.com/x"


def test_retention_deletes_old_finished_documents_only(clean_db, owner_and_version):
    seed(clean_db, owner_and_version, {"done": 4, "failed": 2, "queued": 1}, finished_days_ago=40, batch_sizes=(4,))
    recent = seed(clean_db, owner_and_version, {"done": 3}, finished_days_ago=1)
    with session_scope(clean_db) as session:
        old_done = session.scalars(select(Document.id).where(Document.state == "done",
                                                             Document.finished_at < datetime.now(UTC) - timedelta(days=30))).all()
        corrected = old_done[0]
        session.add(Feedback(document_id=corrected, user_id=session.get(Document, corrected).owner_id,
                             topic_label="sport"))
        session.execute(update(Job).values(created_at=datetime.now(UTC) - timedelta(days=41)))
        session.execute(update(Blob).values(created_at=datetime.now(UTC) - timedelta(days=41)))
        before = session.scalar(select(func.count()).select_from(Blob))
    assert purge(clean_db, RetentionPolicy(days=0)).documents == 0  # off by default

    counts = purge(clean_db, RetentionPolicy(days=30, batch=2))
    assert counts.documents == 5  # 3 old done (one kept: corrected) + 2 old failed; queued is in flight
    with session_scope(clean_db) as session:
        left = dict(session.execute(select(Document.id, Document.state)).all())
        blobs = session.scalar(select(func.count()).select_from(Blob))
        results = session.scalar(select(func.count()).select_from(Result))
        jobs = session.scalar(select(func.count()).select_from(Job))
    assert corrected in left and all(i in left for i in recent)
    assert sorted(left.values()).count("queued") == 1 and len(left) == 5
    assert counts.blobs == before - blobs == 5 and results == 1  # the corrected document's result stays
    assert counts.jobs == 0 and jobs == 2  # both jobs still hold documents


def test_the_web_app_serves_metrics_without_a_session(app, alice):
    client = app.test_client()
    response = client.get("/metrics")
    assert response.status_code == 200 and b"leximind_documents{" in response.data
    assert client.get_cookie("session") is None  # not a page: no session, no login redirect
    assert client.post("/metrics").status_code == 405
    protected = app.test_client()
    app.wsgi_app.token = "scrape-token-123456"
    assert protected.get("/metrics").status_code == 401
    assert protected.get("/metrics", headers={"Authorization": "Bearer scrape-token-123456"}).status_code == 200


def test_beat_runs_retention_on_the_maintenance_queue(clean_db, owner_and_version, monkeypatch):
    from leximind.messaging import ROUTES, make_celery
    from leximind.queues import QUEUE_MAINTENANCE, TASK_RETENTION

    entry = make_celery("redis://127.0.0.1:1/0").conf.beat_schedule["retention"]
    assert entry["task"] == TASK_RETENTION and entry["options"]["queue"] == QUEUE_MAINTENANCE
    assert ROUTES[TASK_RETENTION] == QUEUE_MAINTENANCE
    seed(clean_db, owner_and_version, {"done": 3, "failed": 1}, finished_days_ago=40)
    seed(clean_db, owner_and_version, {"done": 2}, finished_days_ago=2)
    import workers.runtime
    from workers.tasks import retention

    monkeypatch.setenv("DATABASE_URL", clean_db)
    monkeypatch.setattr(workers.runtime, "_runtime", None)
    monkeypatch.delenv("LEXIMIND_RETENTION_DAYS", raising=False)
    assert retention.run()["documents"] == 0  # no policy, nothing deleted
    monkeypatch.setenv("LEXIMIND_RETENTION_DAYS", "30")
    assert retention.run()["documents"] == 4
