"""The Celery client the web process sends wake-ups with (by task name; see leximind.messaging)."""
from __future__ import annotations

import logging

from celery import Celery
from flask import Flask, current_app

from leximind import messaging

log = logging.getLogger(__name__)


def celery_client() -> Celery:
    return current_app.extensions["leximind.celery"]


def wake_extract(document_ids: list[int]) -> bool:
    """Send extract wake-ups after the upload committed. If the broker is down the documents are safe in
    Postgres and the sweeper sends the wake-ups later, so this only logs; returns whether it sent."""
    try:
        messaging.wake_extract(celery_client(), document_ids)
        return True
    except Exception:
        log.warning("could not send extract wake-ups for %d documents; the sweeper will", len(document_ids),
                    exc_info=True)
        return False


def enqueue_training(run_id: int) -> bool:
    try:
        messaging.enqueue_training(celery_client(), run_id)
        return True
    except Exception:
        log.warning("could not send the wake-up for training run %d; the sweeper will", run_id, exc_info=True)
        return False


def init_app(app: Flask) -> None:
    celery = messaging.make_celery(app.config["BROKER_URL"])
    # fail fast when the broker is away rather than holding a request for the default retry period
    celery.conf.broker_connection_timeout = 2
    celery.conf.broker_transport_options = {**celery.conf.broker_transport_options, "max_retries": 1}
    app.extensions["leximind.celery"] = celery
