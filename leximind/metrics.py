"""Prometheus metrics, computed from Postgres when scraped: web and workers keep no shared state.

``init_app(app)`` serves them at ``/metrics`` from the web app (as WSGI middleware in front of Flask, so
the page is neither a route nor a session user). Every web process answers the same numbers, because they
all come from the database in one short read-only transaction. With ``LEXIMIND_METRICS_TOKEN`` set, a
scrape must send ``Authorization: Bearer <that token>``; the figures are counts only, never anyone's data.

| metric | type | what |
|---|---|---|
| ``leximind_documents{state}`` | gauge | documents by state: the queue depth at each step |
| ``leximind_documents_failed{code}`` | gauge | failed documents by error code (the reason) |
| ``leximind_documents_finished_recent{state}`` | gauge | done / failed within the last window |
| ``leximind_documents_per_second`` | gauge | documents finished per second over the window |
| ``leximind_oldest_waiting_seconds{state}`` | gauge | age of the oldest document waiting in uploaded / queued |
| ``leximind_expired_leases`` | gauge | claimed documents whose lease ran out (a worker died; the sweeper is due) |
| ``leximind_recent_batch_size`` | gauge histogram | documents per model batch within the window |
| ``leximind_active_model_info{version,id}`` | info | the active model version (absent: none) |
| ``leximind_jobs`` | gauge | jobs in the database |
| ``leximind_metrics_scrape_seconds`` | gauge | time this scrape spent in the database |

Batch sizes come from the results table: a worker writes one batch's results in one transaction, and
PostgreSQL's ``now()`` is the transaction's start, so results sharing ``created_at`` and model version were
one batch (copies of earlier results for repeated content count as a batch of their own).
"""
from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from sqlalchemy import text

from db.models import DocState
from db.session import session_scope

WINDOW_S = 300.0
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
STATES = [s.value for s in DocState]

_QUERIES = {
    "states": "SELECT state, count(*) FROM documents GROUP BY state",
    "failed": "SELECT coalesce(error_code, 'unknown'), count(*) FROM documents WHERE state = 'failed' "
              "GROUP BY 1",
    "finished": "SELECT state, count(*) FROM documents WHERE finished_at > now() - make_interval(secs => :w) "
                "AND state IN ('done', 'failed') GROUP BY state",
    "oldest": "SELECT state, extract(epoch FROM now() - min(coalesce(queued_at, created_at))) FROM documents "
              "WHERE state IN ('uploaded', 'queued') GROUP BY state",
    "expired": "SELECT count(*) FROM documents WHERE state IN ('extracting', 'processing') "
               "AND lease_expires_at < now()",
    "batches": "SELECT count(*) FROM results WHERE created_at > now() - make_interval(secs => :w) "
               "GROUP BY created_at, model_version_id",
    "model": "SELECT id, name FROM model_versions WHERE is_active",
    "jobs": "SELECT count(*) FROM jobs",
}


class DatabaseCollector:
    """A prometheus_client collector that reads every figure from PostgreSQL at scrape time."""

    def __init__(self, database_url: str, window_s: float = WINDOW_S):
        self.database_url = database_url
        self.window_s = window_s

    def read(self) -> dict[str, list[tuple[Any, ...]]]:
        with session_scope(self.database_url) as session:
            session.execute(text("SET TRANSACTION READ ONLY"))
            session.execute(text("SET LOCAL statement_timeout = 5000"))
            return {name: [tuple(row) for row in session.execute(text(sql), {"w": self.window_s})]
                    for name, sql in _QUERIES.items()}

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        rows = self.read()
        elapsed = time.perf_counter() - started

        by_state = dict(rows["states"])
        documents = GaugeMetricFamily("leximind_documents", "Documents by state (queue depth per step).",
                                      labels=["state"])
        for state in STATES:
            documents.add_metric([state], by_state.get(state, 0))
        yield documents

        failed = GaugeMetricFamily("leximind_documents_failed", "Failed documents by error code.", labels=["code"])
        for code, count in sorted(rows["failed"]):
            failed.add_metric([code], count)
        yield failed

        finished = dict(rows["finished"])
        recent = GaugeMetricFamily("leximind_documents_finished_recent",
                                   f"Documents finished in the last {self.window_s:.0f} s.", labels=["state"])
        for state in ("done", "failed"):
            recent.add_metric([state], finished.get(state, 0))
        yield recent
        yield GaugeMetricFamily("leximind_documents_per_second",
                                f"Documents finished per second over the last {self.window_s:.0f} s.",
                                value=sum(finished.values()) / self.window_s)

        oldest = GaugeMetricFamily("leximind_oldest_waiting_seconds",
                                   "Age of the oldest document waiting in this state.", labels=["state"])
        ages = dict(rows["oldest"])
        for state in ("uploaded", "queued"):
            oldest.add_metric([state], float(ages.get(state) or 0.0))
        yield oldest
        yield GaugeMetricFamily("leximind_expired_leases",
                                "Claimed documents whose lease expired (their worker died; the sweeper re-queues them).",
                                value=rows["expired"][0][0])

        yield batch_histogram([size for (size,) in rows["batches"]], self.window_s)

        model = InfoMetricFamily("leximind_active_model", "The active model version.")
        for version_id, name in rows["model"]:
            model.add_metric([], {"version": str(name), "id": str(version_id)})
        yield model
        yield GaugeMetricFamily("leximind_jobs", "Jobs in the database.", value=rows["jobs"][0][0])
        yield GaugeMetricFamily("leximind_metrics_scrape_seconds", "Time this scrape spent in the database.",
                                value=elapsed)


def batch_histogram(sizes: Iterable[int], window_s: float) -> GaugeHistogramMetricFamily:
    sizes = list(sizes)
    buckets = [(str(le), sum(1 for s in sizes if s <= le)) for le in BATCH_BUCKETS]
    buckets.append(("+Inf", len(sizes)))
    return GaugeHistogramMetricFamily("leximind_recent_batch_size",
                                      f"Documents per model batch over the last {window_s:.0f} s.",
                                      buckets=buckets, gsum_value=sum(sizes))


def render(database_url: str) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(database_url))
    return generate_latest(registry)


class MetricsMiddleware:
    """Answers GET /metrics itself and passes every other request to the wrapped WSGI app."""

    def __init__(self, wrapped: Callable, database_url: str, token: str | None = None, path: str = "/metrics"):
        self.wrapped = wrapped
        self.database_url = database_url
        self.token = token or None
        self.path = path

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != self.path:
            return self.wrapped(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", b"GET /metrics only\n", [("Allow", "GET")])
        if self.token is not None:
            sent = environ.get("HTTP_AUTHORIZATION", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {self.token}".encode()):
                return _plain(start_response, "401 Unauthorized",
                              b"Send Authorization: Bearer <LEXIMIND_METRICS_TOKEN>\n",
                              [("WWW-Authenticate", 'Bearer realm="metrics"')])
        try:
            body = render(self.database_url)
        except Exception as exc:  # noqa: BLE001 - a scrape reports the outage instead of raising it
            return _plain(start_response, "503 Service Unavailable",
                          f"metrics unavailable: the database did not answer ({type(exc).__name__})\n".encode())
        return _plain(start_response, "200 OK", body, content_type=CONTENT_TYPE_LATEST)


def _plain(start_response: Callable, status: str, body: bytes, headers: list | None = None,
           content_type: str = "text/plain; charset=utf-8") -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), *(headers or [])])
    return [body]


def init_app(app: Any) -> None:
    """Serve /metrics in front of the Flask app (call from the app factory)."""
    token = app.config.get("METRICS_TOKEN", os.environ.get("LEXIMIND_METRICS_TOKEN"))
    app.wsgi_app = MetricsMiddleware(app.wsgi_app, app.config["DATABASE_URL"], token)
