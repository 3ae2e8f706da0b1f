"""Job-status polling under load: concurrent pollers against gunicorn over a 100,000-document database.

Builds a fresh database (migrations, then COPY: users, 2,000 jobs, 100,000 documents with AG News text,
a result per finished document; the newest jobs still in the queue), starts the real web app under
gunicorn (gthread workers) on a loopback port, and runs N pollers, each on its own keep-alive connection
with its owner's API token, polling GET /api/v1/jobs/<id> of a job of its own (half finished, half still
waiting, which adds the queue-position count). Two phases:

- ``paced``: each poller asks every ``--interval`` seconds (a browser's job page polls every 1.5 s); the
  latency people see when the server is not saturated;
- ``saturated``: each poller asks again as soon as it has its answer; the server's capacity.

The baseline, measured in the same run with the same pollers, is GET /healthz: the framework's floor
(routing, headers, no database). Prints one JSON object: requests/s, p50, p99 per phase, the ratios, and
the server's CPU time per request (gunicorn processes and the PostgreSQL backends serving them, read from
/proc): on a shared, busy machine latency measures the neighbours as much as the code, CPU time does not.

    python bench/api.py [--documents 100000] [--clients 50] [--seconds 15] [--workers 2] [--threads 8]
"""
from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # run as a script from anywhere

import argparse  # noqa: E402
import asyncio  # noqa: E402
import csv  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

import psutil  # noqa: E402
import psycopg  # noqa: E402
from sqlalchemy import text  # noqa: E402

from db.accounts import create_user, issue_token  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.session import dispose_all, session_scope  # noqa: E402
from db.versions import register_version  # noqa: E402
from leximind.config import SHARED_DATA  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
WARMUP_S = 2.0  # every poller opens its connection and polls a while before the clock runs
TARGET_P99_MS = 25.0
DOCS_PER_JOB = 50
USERS = 10
WAITING_JOBS = 40  # the newest jobs: still queued, so their pollers also pay for the queue position
TOPICS = ("World", "Sports", "Business", "Sci/Tech")
EMOTIONS = ("joy", "sadness", "anger", "fear", "surprise", "neutral")


text_count = text("SELECT count(*) FROM documents WHERE owner_id = :owner")


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _corpus() -> list[tuple[str, str]]:
    path = SHARED_DATA / "topic" / "ag_news" / "test.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        return [(title, body.replace("\\", " ")) for _, title, body in csv.reader(handle)]


@contextmanager
def bench_database(admin_url: str):
    name = f"lm_bench_api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_plain(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _plain(admin_url).rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        dispose_all()
        with psycopg.connect(_plain(admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Poller:
    token: str
    job_id: int


def populate(url: str, documents: int) -> list[Poller]:
    """Users, jobs, blobs, documents and results; returns one (token, job) pair per job to poll."""
    upgrade(url)
    with session_scope(url) as session:
        users = [create_user(session, f"user{i}@bench.example", "bench-password") for i in range(USERS)]
        tokens = {u.id: issue_token(session, u.id, "bench").secret for u in users}
        version_id = register_version(session, path="/bench/v1", source="import", name="v1", activate=True).id
    corpus = _corpus()
    jobs = documents // DOCS_PER_JOB
    now = datetime.now(UTC)
    start = now - timedelta(days=30)
    # user 0 owns every other job (over half of the documents): their history is the big one
    owners = [users[0 if j % 2 == 0 else j % USERS].id for j in range(jobs)]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY jobs (id, owner_id, created_at) FROM STDIN") as copy:
            for j in range(jobs):
                copy.write_row((j + 1, owners[j], start + timedelta(seconds=j * 60)))
        # one blob per owner and corpus line: documents share them, as repeated uploads would
        blob_ids: dict[tuple[int, int], int] = {}
        with cur.copy("COPY blobs (id, owner_id, sha256, size_bytes, data, created_at) FROM STDIN") as copy:
            for d in range(documents):
                owner, line = owners[d // DOCS_PER_JOB], d % len(corpus)
                if (owner, line) not in blob_ids:
                    blob_ids[owner, line] = len(blob_ids) + 1
                    data = (corpus[line][0] + "\n" + corpus[line][1]).encode()
                    copy.write_row((blob_ids[owner, line], owner, hashlib.sha256(data).hexdigest(), len(data),
                                    data, start))
        waiting_from = (jobs - WAITING_JOBS) * DOCS_PER_JOB
        columns = ("id, job_id, owner_id, blob_id, sha256, filename, content_type, size_bytes, title, text, state, "
                   "attempts, created_at, updated_at, queued_at, finished_at")
        with cur.copy(f"COPY documents ({columns}) FROM STDIN") as copy:
            for d in range(documents):
                job, owner, line = d // DOCS_PER_JOB, owners[d // DOCS_PER_JOB], d % len(corpus)
                title, body = corpus[line]
                created = start + timedelta(seconds=job * 60, milliseconds=d % DOCS_PER_JOB)
                done = d < waiting_from
                finished = now - timedelta(seconds=(waiting_from - d) * 0.01) if done else None
                copy.write_row((d + 1, job + 1, owner, blob_ids[owner, line], "0" * 64, f"news-{d}.txt",
                                "text/plain", len(body), title[:500], body, "done" if done else "queued", 1,
                                created, created, created, finished))
        with cur.copy("COPY results (document_id, model_version_id, summary, topic_label, topic_score, "
                      "topic_scores, emotions, emotion_labels, timings, created_at) FROM STDIN") as copy:
            rng = random.Random(0)
            for d in range(waiting_from):
                topic = TOPICS[d % 4]
                emotion = EMOTIONS[rng.randrange(len(EMOTIONS))]
                scores = {t: (0.7 if t == topic else 0.1) for t in TOPICS}
                emotions = [{"label": e, "score": 0.8 if e == emotion else 0.1, "threshold": 0.5,
                             "selected": e == emotion} for e in EMOTIONS]
                copy.write_row((d + 1, version_id, corpus[d % len(corpus)][1][:200], topic, 0.7, json.dumps(scores),
                                json.dumps(emotions), json.dumps([emotion]), json.dumps({"total_s": 0.02}), now))
        for table in ("jobs", "blobs", "documents", "results"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        conn.commit()
    # settle before the clock: freshly copied tables would otherwise be vacuumed by autovacuum during the
    # measured phases, and the dirty pages flushed by a checkpoint there
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
    finished_jobs = list(range(1, jobs - WAITING_JOBS + 1))
    waiting_jobs = list(range(jobs - WAITING_JOBS + 1, jobs + 1))
    rng = random.Random(1)
    picked = rng.sample(finished_jobs, 25) + waiting_jobs[:25]
    return [Poller(tokens[owners[j - 1]], j) for j in picked]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gunicorn(database_url: str, broker_url: str, workers: int, threads: int):
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "BROKER_URL": broker_url, "SECRET_KEY": "bench",
           "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--worker-class", "gthread", "--threads", str(threads), "--keep-alive", "30", "--log-level", "warning",
         "webapp:create_app()"], cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                    if b"200" in sock.recv(100):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.2)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def _request(reader, writer, request: bytes) -> int:
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def _poller(port: int, request: bytes, measure_from: float, until: float, interval: float | None,
                  latencies: list[float], errors: list[int], first: list[float]) -> None:
    """One client on one keep-alive connection (as a browser's job page keeps one): it connects when its first
    request is due (a browser connects to send, and gunicorn's gthread worker gives a new connection a thread
    until its first request arrives), warms up until ``measure_from``, then records every request it starts
    before ``until``. The first request, connection included, is recorded apart, in ``first``."""
    next_at = time.perf_counter() + (random.random() * interval if interval else 0.0)
    writer = None
    try:
        while True:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += interval
            started = time.perf_counter()
            if started >= until:
                return
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                await _request(reader, writer, request)
                first.append(time.perf_counter() - started)
                continue
            status = await _request(reader, writer, request)
            if started >= measure_from:
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors.append(status)
    finally:
        if writer is not None:
            writer.close()


def _summary(latencies: list[float], errors: list[int], seconds: float) -> dict:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2) if ordered else float("nan")

    return {"requests": len(ordered), "requests_per_s": round(len(ordered) / seconds, 1), "p50_ms": pct(0.50),
            "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": pct(1.0), "errors": len(errors)}


class CpuMeter:
    """CPU seconds used by the web server's processes and by the database backends of one database."""

    def __init__(self, server_pid: int, database_url: str):
        self.server = psutil.Process(server_pid)
        self.database_url = database_url

    def _backends(self) -> list[psutil.Process]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            pids = [r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
        return [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]

    @staticmethod
    def _cpu(processes: list[psutil.Process]) -> dict[int, float]:
        used = {}
        for process in processes:
            try:
                times = process.cpu_times()
                used[process.pid] = times.user + times.system
            except psutil.Error:
                pass
        return used

    def sample(self) -> tuple[dict[int, float], dict[int, float]]:
        return (self._cpu([self.server, *self.server.children(recursive=True)]), self._cpu(self._backends()))

    @staticmethod
    def used(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(after[pid] - before.get(pid, 0.0) for pid in after)


def run_phase(port: int, requests: list[bytes], seconds: float, interval: float | None,
              meter: CpuMeter | None = None) -> dict:
    async def main() -> dict:
        latencies: list[float] = []
        errors: list[int] = []
        first: list[float] = []
        measure_from = time.perf_counter() + WARMUP_S
        until = measure_from + seconds
        samples: list = []

        async def sample_when_the_clock_starts() -> None:  # CPU counters read off the event loop's thread
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            samples.append(await asyncio.to_thread(meter.sample))

        await asyncio.gather(*[_poller(port, r, measure_from, until, interval, latencies, errors, first)
                               for r in requests], *([sample_when_the_clock_starts()] if meter else []))
        summary = _summary(latencies, errors, time.perf_counter() - measure_from)
        connect = _summary(first, [], 1.0)
        summary["first_request_on_new_connection"] = {k: connect[k] for k in ("p50_ms", "p99_ms", "max_ms")}
        if meter and latencies and samples:
            after = meter.sample()
            web, database = (CpuMeter.used(b, a) for b, a in zip(samples[0], after, strict=True))
            summary["cpu_ms_per_request"] = {"web": round(1000 * web / len(latencies), 3),
                                             "postgres": round(1000 * database / len(latencies), 3)}
        return summary

    return asyncio.run(main())


def time_history(url: str, owner_email: str, repeats: int = 5) -> dict:
    """Median milliseconds of db.history.list_documents (50 rows and the capped count) for typical filters."""
    from sqlalchemy import select

    from db.history import HistoryFilter, list_documents
    from db.models import User

    with session_scope(url) as session:
        owner_id = session.scalar(select(User.id).where(User.email == owner_email))
        total = session.execute(text_count, {"owner": owner_id}).scalar()
        cases = {
            "newest": {}, "oldest": {"sort": "oldest"}, "name": {"sort": "name"}, "topic": {"topic": "Sports"},
            "emotion": {"emotion": "fear"}, "state": {"state": "queued"}, "search": {"q": "oil prices"},
            "search_and_topic": {"q": "oil", "topic": "Business"},
            "date_range": {"date_from": (datetime.now(UTC) - timedelta(days=10)).date(),
                           "date_to": (datetime.now(UTC) - timedelta(days=9)).date()},
        }
        timings = {}
        for name, extra in cases.items():
            flt = HistoryFilter(owner_id=owner_id, **extra)
            runs = []
            for _ in range(repeats):
                started = time.perf_counter()
                list_documents(session, flt, limit=50)
                runs.append(time.perf_counter() - started)
            timings[name] = round(1000 * sorted(runs)[len(runs) // 2], 1)
        far = list_documents(session, HistoryFilter(owner_id=owner_id), limit=50)
        for _ in range(200):  # page 201: keyset pages cost what the first one costs
            far = list_documents(session, HistoryFilter(owner_id=owner_id), after=far.next_cursor, limit=50)
        started = time.perf_counter()
        list_documents(session, HistoryFilter(owner_id=owner_id), after=far.next_cursor, limit=50)
        timings["page_202"] = round(1000 * (time.perf_counter() - started), 1)
    return {"owner_documents": total, "median_ms": timings}


def http_get(path: str, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: application/json\r\n{auth}\r\n".encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between one poller's requests (paced)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--history-only", action="store_true", help="time the history queries, skip the pollers")
    parser.add_argument("--admin-url", default=os.environ.get("TEST_DATABASE_ADMIN_URL",
                                                                "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--broker-url", default=os.environ.get("BROKER_URL", "redis://127.0.0.1:6379/15"))
    args = parser.parse_args()

    with bench_database(args.admin_url) as url:
        started = time.perf_counter()
        pollers = populate(url, args.documents)
        populate_s = time.perf_counter() - started
        history = time_history(url, "user0@bench.example")
        if args.history_only:
            print(json.dumps({"benchmark": "api_history", "documents": args.documents, "history": history,
                              "load_avg": [round(x, 2) for x in os.getloadavg()]}))
            return
        jobs = [http_get(f"/api/v1/jobs/{pollers[i % len(pollers)].job_id}", pollers[i % len(pollers)].token)
                for i in range(args.clients)]
        health = [http_get("/healthz")] * args.clients
        with gunicorn(url, args.broker_url, args.workers, args.threads) as (port, pid):
            meter = CpuMeter(pid, url)
            phases = {
                "paced": run_phase(port, jobs, args.seconds, args.interval, meter),
                "paced_baseline_healthz": run_phase(port, health, args.seconds, args.interval, meter),
                "saturated": run_phase(port, jobs, args.seconds, None, meter),
                "saturated_baseline_healthz": run_phase(port, health, args.seconds, None, meter),
            }
    paced, floor = phases["paced"], phases["paced_baseline_healthz"]
    cpu = phases["saturated"].get("cpu_ms_per_request", {})
    cpu_ms = sum(cpu.values()) or float("nan")
    report = {
        "benchmark": "api_job_polling", "documents": args.documents, "clients": args.clients,
        "interval_s": args.interval, "gunicorn": f"{args.workers} workers x {args.threads} threads",
        "cpus": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()],
        "populate_s": round(populate_s, 1), "history": history, **phases,
        "ratios": {
            "paced_p99_vs_healthz": round(paced["p99_ms"] / floor["p99_ms"], 2),
            "saturated_rps_vs_healthz": round(phases["saturated"]["requests_per_s"]
                                              / phases["saturated_baseline_healthz"]["requests_per_s"], 2),
        },
        # what two idle cores could serve, from CPU time alone, and how busy the paced load would keep them
        "capacity_rps_on_2_idle_cores": round(2000 / cpu_ms, 1),
        "paced_utilisation_of_2_cores": round(paced["requests_per_s"] * cpu_ms / 2000, 3),
        "target_p99_ms": TARGET_P99_MS, "paced_p99_meets_target": paced["p99_ms"] <= TARGET_P99_MS,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
