"""The Celery app and the wake-up calls, by task name (the web process imports this, never the workers).

Redis carries wake-ups only; Postgres is the record. A lost message costs latency, never a document: the
sweeper re-sends wake-ups for documents that wait too long (see workers/sweeper.py).

Queues are declared on the default exchange, so a message is routed by its queue name alone. With named
exchanges kombu's Redis transport routes through binding keys it keeps in Redis and declares once per
connection; after a FLUSHALL those keys are gone and every later message would be dropped silently.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable

from celery import Celery
from kombu import Exchange, Queue

from leximind.queues import (
    ALL_QUEUES,
    QUEUE_EXTRACT,
    QUEUE_INFER,
    QUEUE_MAINTENANCE,
    QUEUE_TRAIN,
    TASK_EXTRACT,
    TASK_INFER,
    TASK_RETENTION,
    TASK_SWEEP,
    TASK_TRAIN,
)

log = logging.getLogger(__name__)

ROUTES = {
    TASK_EXTRACT: QUEUE_EXTRACT,
    TASK_INFER: QUEUE_INFER,
    TASK_TRAIN: QUEUE_TRAIN,
    TASK_SWEEP: QUEUE_MAINTENANCE,
    TASK_RETENTION: QUEUE_MAINTENANCE,
}
# set while an infer wake-up is waiting in the queue; the infer task clears it when it starts draining
INFER_PENDING_KEY = "leximind:infer-wakeup-pending"
INFER_PENDING_TTL_S = 30


def default_broker_url() -> str:
    return os.environ.get("BROKER_URL") or "redis://127.0.0.1:6379/0"


def make_celery(broker_url: str | None = None, *, sweep_interval_s: float | None = None) -> Celery:
    """The one Celery configuration every process uses (web, workers, beat, CLI, tests)."""
    app = Celery("leximind", broker=broker_url or default_broker_url(), set_as_current=False)
    default_exchange = Exchange("", type="direct")
    if sweep_interval_s is None:
        sweep_interval_s = float(os.environ.get("LEXIMIND_SWEEP_INTERVAL", 10.0))
    app.conf.update(
        # JSON only: no pickle in messages, ever
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        # a message is acknowledged after the task ran; a killed worker's message is redelivered
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # a pool child loads the model before it reports ready; the default of 4 s would kill it
        worker_proc_alive_timeout=300,
        # state lives in Postgres, not in a result backend
        result_backend=None,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_queues=[Queue(name, default_exchange, routing_key=name) for name in ALL_QUEUES],
        task_default_queue=QUEUE_MAINTENANCE,
        task_default_exchange="",
        task_default_routing_key=QUEUE_MAINTENANCE,
        task_create_missing_queues=False,
        task_routes={
            name: {"queue": queue, "exchange": "", "routing_key": queue} for name, queue in ROUTES.items()
        },
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        # the sweeper; the in-memory scheduler keeps beat free of its pickled shelve file
        beat_scheduler="celery.beat:Scheduler",
        beat_schedule={
            "sweep": {
                "task": TASK_SWEEP,
                "schedule": sweep_interval_s,
                "options": {"queue": QUEUE_MAINTENANCE, "expires": max(sweep_interval_s, 1.0)},
            },
            # old finished documents, by the policy in LEXIMIND_RETENTION_DAYS (db/retention.py)
            "retention": {
                "task": TASK_RETENTION,
                "schedule": float(os.environ.get("LEXIMIND_RETENTION_INTERVAL", 3600.0)),
                "options": {"queue": QUEUE_MAINTENANCE, "expires": 600.0},
            },
        },
        worker_hijack_root_logger=False,
        worker_max_tasks_per_child=None,
        timezone="UTC",
        enable_utc=True,
    )
    return app


def worker_argv(queues: str, concurrency: int, name: str, loglevel: str = "info") -> list[str]:
    """``celery worker`` arguments every LexiMind worker uses (after ``celery -A <app>``).

    Mingle, gossip and worker heartbeats are cluster chatter that our design does not use: state is in
    Postgres and the sweeper, not worker-to-worker messages, keeps things moving.
    """
    return ["worker", "-Q", queues, "-c", str(concurrency), "-n", f"{name}@%h",
            "--without-mingle", "--without-gossip", "--without-heartbeat", "-l", loglevel]  # fmt: skip


def _send(celery: Celery, task: str, args: list | None = None, **options) -> None:
    queue = ROUTES[task]
    celery.send_task(task, args=args or [], queue=queue, exchange="", routing_key=queue, **options)


def wake_extract(celery: Celery, document_ids: Iterable[int]) -> None:
    """Extract messages for these documents (call after the upload committed).

    A message carries one id, or a list of up to EXTRACT_IDS_PER_MESSAGE ids: a large upload costs a
    few messages instead of one per file, yet is split finely enough that every extract process gets
    a share (see ``extract_chunks``).
    """
    ids = [int(i) for i in document_ids]
    with celery.producer_or_acquire() as producer:
        for chunk in extract_chunks(ids):
            _send(celery, TASK_EXTRACT, [chunk[0] if len(chunk) == 1 else chunk], producer=producer)


EXTRACT_IDS_PER_MESSAGE = 16
EXTRACT_SPREAD = 8  # a batch of ids is cut into at least this many messages (while they hold 2+ ids)


def extract_chunks(ids: list[int]) -> list[list[int]]:
    size = max(1, min(EXTRACT_IDS_PER_MESSAGE, len(ids) // EXTRACT_SPREAD))
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def wake_infer(celery: Celery, *, force: bool = False) -> bool:
    """Make sure an infer worker will look at the queue; returns whether a message was sent.

    One pending wake-up is enough, since the woken worker drains every due document; so unless ``force``,
    a message is sent only if none is pending (an expiring Redis flag). Bursts of extractions then cost
    one message, not one each.
    """
    client = _redis_client(celery)
    if not force and client is not None:
        try:
            if not client.set(INFER_PENDING_KEY, "1", nx=True, ex=INFER_PENDING_TTL_S):
                return False
        except Exception:  # the flag is an optimisation; sending anyway is always correct
            log.warning("could not check the infer wake-up flag; sending a wake-up anyway", exc_info=True)
    _send(celery, TASK_INFER)
    return True


def clear_infer_pending(celery: Celery) -> None:
    """Called by the infer task before it claims, so any document queued after this gets a new wake-up."""
    client = _redis_client(celery)
    if client is not None:
        client.delete(INFER_PENDING_KEY)


def enqueue_training(celery: Celery, run_id: int) -> None:
    _send(celery, TASK_TRAIN, [int(run_id)])


def send_sweep(celery: Celery) -> None:
    _send(celery, TASK_SWEEP)


_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def _redis_client(celery: Celery):
    url = celery.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    key = f"{os.getpid()}:{url}"  # a forked child must not share its parent's sockets
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
            _clients[key] = client
        return client
