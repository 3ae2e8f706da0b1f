"""Job-system throughput: small documents through upload -> extract -> infer -> done with a tiny model.

Two runs in one script, each on a fresh database and the same private Redis, with the same number of
worker processes and the same tiny random model:

- ``batched``: the real system (``workers.celery_app``): extract workers, and an infer worker that claims
  many queued documents at once and runs them through the model in length-bucketed batches;
- ``baseline``: one Celery task per document that extracts it, runs the model on it alone and writes the
  result (the design the batching replaces).

Documents are AG News headlines + descriptions (``shared/data/topic/ag_news/test.csv``). The clock runs
from the first upload to the last document leaving the pipeline (uploads go through ``db.uploads``, as
the API does). Prints one JSON line per run and a final line with the ratio and the targets.

    python -m bench.jobqueue [--docs 2000] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from celery.signals import worker_process_init
from sqlalchemy import create_engine, func, select, text

from db.models import DocState, Document, User
from db.session import dispose_all, normalize_url, session_scope
from leximind.messaging import default_broker_url, make_celery, worker_argv
from leximind.queues import QUEUE_EXTRACT

REPO = Path(__file__).resolve().parent.parent
BASELINE_TASK = "bench.baseline_process_document"
TARGET_DOCS_PER_S = 200.0
TARGET_RATIO = 5.0

# --------------------------------------------------------------------------- the baseline worker's app
# ``celery -A bench.jobqueue:baseline_app worker`` imports this module; the driver below never uses it.
baseline_app = make_celery(default_broker_url())


@worker_process_init.connect
def _baseline_process_init(**_: object) -> None:
    if os.environ.get("LEXIMIND_BENCH_BASELINE") == "1":
        from workers.runtime import init_process

        init_process(baseline_app, load_model=True)


@baseline_app.task(name=BASELINE_TASK)
def baseline_process_document(document_id: int) -> str:
    """Extract one document, then run the model on one queued document alone and write its result."""
    import dataclasses

    from workers.extract_step import extract_document
    from workers.inference import process_queue
    from workers.runtime import get_runtime

    rt = get_runtime()
    outcome = extract_document(
        rt.database_url, int(document_id), settings=rt.settings, tuning=rt.tuning, worker_name=rt.worker_name
    )
    one_at_a_time = dataclasses.replace(rt.settings, claim_batch_size=1)
    process_queue(
        rt.database_url,
        rt.predictors,
        settings=one_at_a_time,
        tuning=rt.tuning,
        worker_name=rt.worker_name,
        max_rounds=1,
    )
    return outcome.value


# --------------------------------------------------------------------------- the driver
def load_texts(n: int, shared_data: Path) -> list[bytes]:
    rows = []
    with (shared_data / "topic" / "ag_news" / "test.csv").open(encoding="utf-8", newline="") as handle:
        for _, title, description in csv.reader(handle):
            rows.append(f"{title}\n\n{description.replace(chr(92), ' ')}".encode())
            if len(rows) == n:
                break
    while len(rows) < n:  # more than the file holds: vary the copies so no content repeats
        rows.append(rows[len(rows) % 7600] + f"\n({len(rows)})".encode())
    return rows


@contextmanager
def private_redis():
    from leximind.services import start_embedded_redis

    folder = Path(tempfile.mkdtemp(prefix="lm-bench-redis-"))
    url = start_embedded_redis(folder)
    try:
        yield url
    finally:
        pid = folder / "redis" / "redis.pid"
        if pid.exists():
            os.kill(int(pid.read_text().strip()), signal.SIGTERM)


@contextmanager
def fresh_database(admin_url: str):
    from db.migrate import upgrade

    name = f"lm_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        dispose_all()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def admin_database_url() -> str:
    from leximind.services import port_open, start_embedded_postgres

    url = os.environ.get("TEST_DATABASE_ADMIN_URL") or os.environ.get("DATABASE_URL")
    if url:
        return url
    if port_open("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    return start_embedded_postgres(Path(tempfile.mkdtemp(prefix="lm-bench-pg-")))


def tiny_artifact(size: str) -> Path:
    """A random model whose heads count as trained, so labels come from the heads, not zero-shot prompts."""
    from model.artifacts import create_random_artifact, load_artifact, save_artifact

    folder = REPO / "test-artifacts" / f"bench-queue-{size}-heads"
    if not folder.exists():
        scratch = Path(tempfile.mkdtemp(prefix="lm-bench-art-")) / "random"
        artifact = load_artifact(create_random_artifact(scratch, size=size, seed=0))
        save_artifact(
            folder, artifact.model, artifact.tokenizer, {**artifact.labels, "heads_trained": True}, {}
        )
    return folder


class Workers:
    """Celery worker processes in their own process groups, stopped (and killed if need be) at the end."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env, self.logs, self.procs = env, logs, []

    def start(self, name: str, app: str, queues: str, concurrency: int, **extra_env: str) -> None:
        log_path = self.logs / f"{name}.log"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                app,
                *worker_argv(queues, concurrency, name, loglevel="warning"),
            ],
            cwd=REPO,
            env={**self.env, **extra_env},
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((name, proc, log_path))

    def wait_ready(self, database_url: str, timeout: float = 120) -> None:
        """Ready when every pool process has loaded the model; a warm-up document proves each path."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc, log_path in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{log_path.read_text()[-4000:]}")
            if done_count(database_url) >= 1:
                return
            time.sleep(0.1)
        raise RuntimeError("workers did not process the warm-up document in time")

    def stop(self) -> None:
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc, _ in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class CpuMeter:
    """CPU seconds spent by the worker process trees and the database's backends for this database.

    The benchmark machine may be shared; CPU time, unlike wall time, says what the pipeline itself costs:
    docs / (cpu_s / cores) is the rate it would reach with the cores to itself.
    """

    def __init__(self, database_url: str, workers: Workers):
        self.database_url, self.workers = database_url, workers
        self.start = self._sample()

    def _pids(self) -> list[int]:
        import psutil

        pids = []
        for _, proc, _ in self.workers.procs:
            try:
                parent = psutil.Process(proc.pid)
                pids += [parent.pid, *(c.pid for c in parent.children(recursive=True))]
            except psutil.NoSuchProcess:
                pass
        with session_scope(self.database_url) as session:
            pids += session.scalars(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            )
        return pids

    def _sample(self) -> dict[int, float]:
        import psutil

        sample = {}
        for pid in self._pids():
            try:
                times = psutil.Process(pid).cpu_times()
                sample[pid] = times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return sample

    def seconds(self) -> float:
        end = self._sample()
        return sum(max(0.0, used - self.start.get(pid, 0.0)) for pid, used in end.items())


def state_counts(database_url: str) -> dict[str, int]:
    with session_scope(database_url) as session:
        return dict(session.execute(select(Document.state, func.count()).group_by(Document.state)).all())


def done_count(database_url: str) -> int:
    with session_scope(database_url) as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(Document)
                .where(Document.state.in_([DocState.DONE.value, DocState.FAILED.value]))
            )
            or 0
        )


def upload_all(database_url: str, celery, owner_id: int, texts: list[bytes], per_job: int, send) -> None:
    from db.uploads import UploadedFile, create_job

    for start in range(0, len(texts), per_job):
        files = [
            UploadedFile(f"doc-{start + i}.txt", data)
            for i, data in enumerate(texts[start : start + per_job])
        ]
        with session_scope(database_url) as session:
            _, documents = create_job(session, owner_id, files)
            ids = [d.id for d in documents]
        send(celery, ids)


def run_mode(
    mode: str, admin_url: str, broker_url: str, artifact: Path, texts: list[bytes], args: argparse.Namespace
) -> dict:
    import redis

    from db.versions import register_version
    from leximind.messaging import wake_extract

    redis.Redis.from_url(broker_url).flushall()
    with fresh_database(admin_url) as database_url:
        with session_scope(database_url) as session:
            owner = User(email="bench@example.com", password_hash="-", role="user")
            session.add(owner)
            session.flush()
            owner_id = owner.id
            register_version(session, path=str(artifact), source="import", activate=True)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "BROKER_URL": broker_url,
            "LEXIMIND_DEVICE": "cpu",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "LEXIMIND_SWEEP_INTERVAL": "3600",
            # the infer process shares two cores with extraction: one torch thread, big batches of short
            # summaries (a random model never stops early: every summary is exactly this long)
            "LEXIMIND_TORCH_THREADS": "1",
            "LEXIMIND_MAX_SUMMARY_TOKENS": str(args.summary_tokens),
            "LEXIMIND_PIPELINE_BATCH_ROWS": "64",
            "LEXIMIND_PIPELINE_BATCH_TOKENS": str(64 * 160),
        }
        celery = make_celery(broker_url)
        logs = Path(tempfile.mkdtemp(prefix=f"lm-bench-{mode}-"))
        workers = Workers(env, logs)
        if mode == "batched":
            send = wake_extract
            workers.start("extract", "workers.celery_app", QUEUE_EXTRACT, args.extract_concurrency)
            workers.start("infer", "workers.celery_app", "infer", args.infer_concurrency)
        else:

            def send(app, ids):
                with app.producer_or_acquire() as producer:
                    for document_id in ids:
                        app.send_task(
                            BASELINE_TASK,
                            args=[document_id],
                            queue=QUEUE_EXTRACT,
                            exchange="",
                            routing_key=QUEUE_EXTRACT,
                            producer=producer,
                        )

            workers.start(
                "baseline",
                "bench.jobqueue:baseline_app",
                QUEUE_EXTRACT,
                args.extract_concurrency + args.infer_concurrency,
                LEXIMIND_BENCH_BASELINE="1",
            )
        try:
            upload_all(database_url, celery, owner_id, [b"warm-up document: load everything first."], 1, send)
            workers.wait_ready(database_url)
            meter = CpuMeter(database_url, workers)
            started, upload_cpu = time.perf_counter(), time.process_time()
            upload_all(database_url, celery, owner_id, texts, args.per_job, send)
            uploaded_s, upload_cpu = time.perf_counter() - started, time.process_time() - upload_cpu
            extracted_s = None
            deadline = time.monotonic() + args.timeout
            while (counts := state_counts(database_url)).get("done", 0) + counts.get("failed", 0) <= len(
                texts
            ):
                if extracted_s is None and not counts.get("uploaded") and not counts.get("extracting"):
                    extracted_s = time.perf_counter() - started
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{mode}: timed out; documents by state: {counts}")
                time.sleep(0.05)
            seconds = time.perf_counter() - started
            cpu_s = meter.seconds() + upload_cpu
        finally:
            workers.stop()
        states = state_counts(database_url)
    processes = args.extract_concurrency + args.infer_concurrency
    return {
        "mode": mode,
        "docs": len(texts),
        "seconds": round(seconds, 2),
        "uploaded_at_s": round(uploaded_s, 2),
        "all_extracted_at_s": round(extracted_s or seconds, 2),
        "docs_per_s": round(len(texts) / seconds, 1),
        "cpu_s": round(cpu_s, 1),
        "docs_per_cpu_s": round(len(texts) / cpu_s, 1),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "worker_processes": processes,
        "states": states,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--summary-tokens", type=int, default=16, help="summary length in tokens")
    parser.add_argument("--size", default="tiny", help="random model size (model.artifacts.RANDOM_SIZES)")
    parser.add_argument(
        "--extract-concurrency",
        type=int,
        default=1,
        help="extract processes (the baseline runs extract + infer processes, the same total)",
    )
    parser.add_argument(
        "--infer-concurrency",
        type=int,
        default=2,
        help="infer processes, one torch thread each (CPU: one per core; a GPU worker runs one)",
    )
    parser.add_argument("--per-job", type=int, default=200, help="documents per upload")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args(argv)

    from leximind.config import get_settings

    texts = load_texts(args.docs, get_settings().shared_data)
    artifact = tiny_artifact(args.size)
    admin_url = admin_database_url()
    results = {}
    with private_redis() as broker_url:
        for mode in ("batched",) if args.skip_baseline else ("batched", "baseline"):
            results[mode] = run_mode(mode, admin_url, broker_url, artifact, texts, args)
            print(json.dumps(results[mode]), flush=True)
    batched = results["batched"]["docs_per_s"]
    cores = min(2, os.cpu_count() or 2)
    projected = {mode: round(r["docs_per_cpu_s"] * cores, 1) for mode, r in results.items()}
    summary = {
        "summary": "job_system",
        "batched_docs_per_s": batched,
        "cores": os.cpu_count(),
        "target_docs_per_s": TARGET_DOCS_PER_S,
        "meets_throughput": batched >= TARGET_DOCS_PER_S,
        # wall-clock rates depend on what else runs on the machine; this is docs per CPU second x 2 cores
        "cpu_bound_docs_per_s_on_2_cores": projected,
    }
    if "baseline" in results:
        ratio = batched / results["baseline"]["docs_per_s"]
        summary |= {
            "baseline_docs_per_s": results["baseline"]["docs_per_s"],
            "ratio": round(ratio, 2),
            "target_ratio": TARGET_RATIO,
            "meets_ratio": ratio >= TARGET_RATIO,
        }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
