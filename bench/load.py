"""The API under load: 50 concurrent pollers while 2,000 documents flow through real workers.

Everything is real and on loopback: gunicorn serving ``webapp:create_app()`` (gthread workers), Celery
extract and infer workers and beat (tests/e2e harness), a private Redis, a fresh database on the local
PostgreSQL (``TEST_DATABASE_ADMIN_URL``, else :5432, else an embedded one), and the quick tiny model of
tests/faults/quick_model.py, so the machine's time goes to the job system and the API rather than the model.

Each poller is one user with an API token and one HTTP keep-alive connection. Two phases, one run:
- ``idle`` (the baseline): every poller polls ``GET /api/v1/jobs/<id>`` of a finished warm-up job while no
  document moves;
- ``load``: every poller uploads its share of the documents as one job, then polls that job until every job
  is finished.
A poller waits ``--think-ms`` between its requests. Prints one JSON line per phase (requests/s and API
latency p50/p99/max) and a summary line with the end-to-end latency per document (upload to done, server
clock) and the load/idle ratios; the summary is also written to test-artifacts/reliability/load.json.

    python -m bench.load [--pollers 50] [--docs 2000] [--think-ms 100] [--idle-s 10]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from db.session import dispose_all, normalize_url, session_scope  # noqa: E402
from leximind.services import free_port, port_open  # noqa: E402
from tests.e2e.conftest import running_stack, wait_for  # noqa: E402
from tests.faults.figures import REPORT_DIR, finished  # noqa: E402
from tests.faults.quick_model import create_quick_artifact  # noqa: E402
from tests.faults.services import PrivateRedis  # noqa: E402

BOUNDARY = "leximind-load-boundary"


@dataclass
class Poller:
    token: str
    job_id: int | None = None
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    document_ids: list[int] = field(default_factory=list)


def request(conn: http.client.HTTPConnection, method: str, path: str, token: str, body: bytes | None = None,
            content_type: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    if content_type:
        headers["Content-Type"] = content_type
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def multipart(files: list[tuple[str, bytes]]) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
             f"Content-Type: text/plain\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def upload(port: int, poller: Poller, files: list[tuple[str, bytes]]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        status, body = request(conn, "POST", "/api/v1/documents", poller.token, multipart(files),
                               f"multipart/form-data; boundary={BOUNDARY}")
    finally:
        conn.close()
    if status != 202:
        raise RuntimeError(f"upload answered {status}: {body[:300]!r}")
    answer = json.loads(body)
    poller.job_id = answer["job_id"]
    poller.document_ids = [d["id"] for d in answer["documents"]]


def poll_until(port: int, poller: Poller, stop: threading.Event, think_s: float) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        started = time.perf_counter()
        for _attempt in (1, 2):  # a keep-alive connection the server just closed is retried once, as clients do
            try:
                status, _ = request(conn, "GET", f"/api/v1/jobs/{poller.job_id}", poller.token)
                break
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        poller.latencies.append(time.perf_counter() - started)
        poller.errors += status != 200
        stop.wait(think_s)
    conn.close()


def phase(name: str, port: int, pollers: list[Poller], think_s: float, until) -> dict:
    for p in pollers:
        p.latencies, p.errors = [], 0
    stop = threading.Event()
    threads = [threading.Thread(target=poll_until, args=(port, p, stop, think_s), daemon=True) for p in pollers]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    until()
    stop.set()
    for thread in threads:
        thread.join(60)
    wall = time.monotonic() - started
    latencies = sorted(x for p in pollers for x in p.latencies)
    return {"bench": "load", "phase": name, "pollers": len(pollers), "wall_s": round(wall, 2),
            "requests": len(latencies), "errors": sum(p.errors for p in pollers),
            "requests_per_s": round(len(latencies) / wall, 1), **percentiles_ms(latencies)}


def percentiles_ms(values: list[float]) -> dict:
    if not values:
        return {}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2), "max_ms": round(values[-1] * 1000, 2)}


def end_to_end(database_url: str, ids: list[int]) -> dict:
    with session_scope(database_url) as session:
        rows = session.execute(text(
            "SELECT extract(epoch FROM finished_at - created_at) FROM documents "
            "WHERE id = ANY(:ids) AND state IN ('done', 'failed')"), {"ids": ids}).scalars().all()
        span = session.execute(text("SELECT extract(epoch FROM max(finished_at) - min(created_at)) FROM documents "
                                    "WHERE id = ANY(:ids)"), {"ids": ids}).scalar()
    values = sorted(float(v) for v in rows)
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"e2e_p50_s": round(q[49], 2), "e2e_p99_s": round(q[98], 2), "e2e_max_s": round(values[-1], 2),
            "documents_per_s": round(len(values) / float(span), 1)}


def admin_url() -> str:
    url = os.environ.get("TEST_DATABASE_ADMIN_URL")
    if url:
        return url
    if port_open("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    from leximind.services import start_embedded_postgres

    return start_embedded_postgres(Path(tempfile.mkdtemp(prefix="lm-load-pg-")))


def gunicorn(port: int, env: dict[str, str], logs: Path, workers: int, threads: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--threads", str(threads), "--worker-class", "gthread", "--timeout", "60", "--keep-alive", "30",
         "--access-logfile", "-", "--logger-class", "leximind.logging_setup.GunicornLogger", "webapp:create_app()"],
        cwd=REPO, env=env, stdout=(logs / "web.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def documents(n: int) -> list[tuple[str, bytes]]:
    from leximind.config import SHARED_DATA
    from tests.faults.conftest import news_documents

    return news_documents(SHARED_DATA, n, "load")


def run(args: argparse.Namespace) -> dict:
    from db.accounts import create_user, issue_token
    from db.migrate import upgrade

    work = Path(tempfile.mkdtemp(prefix="lm-load-"))
    redis = PrivateRedis(work / "redis-data")
    admin = create_engine(normalize_url(admin_url()), isolation_level="AUTOCOMMIT")
    name = f"lm_load_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = admin.url.set(database=name).render_as_string(hide_password=False)
    web = None
    try:
        upgrade(database_url)
        pollers = []
        with session_scope(database_url) as session:
            for i in range(args.pollers):
                user = create_user(session, f"poller{i}@example.com", "correct horse battery")
                pollers.append(Poller(issue_token(session, user.id, "load").secret))
        artifact = create_quick_artifact(REPO / "test-artifacts" / "faults-quick-tiny")
        with running_stack(database_url, redis.url, artifact, work) as stack:
            port = free_port()
            web_env = {**stack.env, "SECRET_KEY": uuid.uuid4().hex, "LEXIMIND_SECURE_COOKIES": "0",
                       "LEXIMIND_UPLOAD_RATE_LIMIT": "100000 per minute", "LEXIMIND_LOG_FORMAT": "json"}
            web = gunicorn(port, web_env, stack.logs, args.web_workers, args.web_threads)
            extract = stack.worker("extract", "extract,maintenance", concurrency=args.extract_concurrency, wait=False)
            infer = stack.worker("infer", "infer", wait=False, LEXIMIND_CLAIM_BATCH="64", LEXIMIND_INFER_BATCH="32")
            stack.beat()
            stack.wait_ready(extract, infer)
            wait_for(lambda: port_open("127.0.0.1", port), 60, "gunicorn to listen", stack)

            warm = [i for p in pollers for i in (upload(port, p, [(f"warm-{p.token[-6:]}.txt", b"warm up")])
                                                 or p.document_ids)]
            wait_for(lambda: finished(database_url, warm) == len(warm), 120, "the warm-up jobs", stack)
            idle = phase("idle", port, pollers, args.think_ms / 1000, lambda: time.sleep(args.idle_s))
            print(json.dumps(idle), flush=True)

            docs = documents(args.docs)
            share = -(-len(docs) // len(pollers))
            ids: list[int] = []

            def upload_then_wait() -> None:
                for n, p in enumerate(pollers):
                    upload(port, p, docs[n * share:(n + 1) * share])
                    ids.extend(p.document_ids)
                wait_for(lambda: finished(database_url, ids) == len(ids), args.timeout_s, "every document", stack)

            load = phase("load", port, pollers, args.think_ms / 1000, upload_then_wait)
            print(json.dumps(load), flush=True)
            summary = {"bench": "load", "phase": "summary", "pollers": len(pollers), "documents": len(ids),
                       "think_ms": args.think_ms, **end_to_end(database_url, ids),
                       "requests_per_s": load["requests_per_s"], "api_p50_ms": load["p50_ms"],
                       "api_p99_ms": load["p99_ms"], "api_errors": load["errors"],
                       "p99_ratio_load_vs_idle": round(load["p99_ms"] / idle["p99_ms"], 2),
                       "requests_ratio_load_vs_idle": round(load["requests_per_s"] / idle["requests_per_s"], 2),
                       "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 1),
                       "idle": idle, "load": load}
            print(json.dumps({k: v for k, v in summary.items() if k not in ("idle", "load")}), flush=True)
            return summary
    finally:
        if web is not None:
            web.terminate()
            web.wait(20)
        redis.stop()
        dispose_all()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pollers", type=int, default=50)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--think-ms", type=float, default=100.0, help="pause between one poller's requests")
    parser.add_argument("--idle-s", type=float, default=10.0, help="length of the idle baseline phase")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=8)
    parser.add_argument("--extract-concurrency", type=int, default=1)
    parser.add_argument("--timeout-s", type=float, default=900.0)
    parser.add_argument("--report", default=str(REPORT_DIR / "load.json"), help="'' to skip writing it")
    args = parser.parse_args(argv)
    summary = run(args)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["api_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
