"""`/healthz`: the process answers. `/readyz`: the database, the broker and at least one worker answer.

`/readyz` is public (load balancers and compose health checks call it without credentials), so what it says
depends on who asks: anyone gets the verdict of each check and the model's state and version; a signed-in
person also gets the model's message with their own waiting documents; only an admin gets the workers' names
and everyone's waiting documents (what other people upload, and the hosts behind the service, are not public).
"""
from __future__ import annotations

import time

import redis
from flask import Blueprint, current_app, jsonify, render_template, request
from flask_login import current_user
from sqlalchemy import text

from db.versions import model_status
from webapp.auth import public
from webapp.database import get_db
from webapp.extensions import limiter
from webapp.queue import celery_client

bp = Blueprint("health", __name__)


class NotReady(RuntimeError):
    """A check that ran and found the service not ready; its message is safe to show."""


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        detail = check()
        ok = True
    except NotReady as exc:
        ok, detail = False, str(exc)
    except Exception as exc:  # a probe reports failures, it does not raise them (nor show their insides)
        ok, detail = False, f"unreachable ({type(exc).__name__})"
    return {"ok": ok, "detail": detail, "ms": round((time.perf_counter() - started) * 1000, 1)}


def _database() -> str:
    get_db().execute(text("SELECT 1"))
    return "reachable"


def _broker() -> str:
    client = redis.Redis.from_url(current_app.config["BROKER_URL"], socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return "reachable"


def _workers(names: bool) -> str:
    replies = celery_client().control.ping(timeout=current_app.config["READY_WORKER_TIMEOUT"]) or []
    if not replies:
        raise NotReady("no worker answered a ping; start one with `leximind worker`")
    answered = f"{len(replies)} worker(s)"
    return answered + ": " + ", ".join(sorted(name for reply in replies for name in reply)) if names else answered


# what an anonymous caller learns about the model: its state, never messages, errors or queue counts
_PUBLIC_MODEL_KEYS = ("state", "version", "serving_version", "training_run_id", "progress_pct")


def _model() -> dict:
    if not current_user.is_authenticated:
        status = model_status(get_db()).to_dict()
        return {key: status[key] for key in _PUBLIC_MODEL_KEYS}
    return model_status(get_db(), None if current_user.is_admin else current_user.id).to_dict()


@bp.get("/healthz")
@public
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
@public
@limiter.limit("120 per minute")  # each call broadcasts a ping to the workers: not for hammering
def readyz():
    checks = {"database": _timed(_database), "broker": _timed(_broker)}
    # asking workers goes through the broker: skip it when the broker is down
    admin = current_user.is_authenticated and current_user.is_admin
    checks["workers"] = _timed(lambda: _workers(names=admin)) if checks["broker"]["ok"] else {
        "ok": False, "detail": "skipped: the broker is unreachable", "ms": 0.0}
    ready = all(check["ok"] for check in checks.values())
    # the model's state is reported, not required: the app serves (and documents wait) while none loads
    model = _model() if checks["database"]["ok"] else None
    code = 200 if ready else 503
    if _prefers_html():  # a person who followed the footer's Status link
        return render_template("status.html", ready=ready, checks=checks, model=model), code
    return jsonify(status="ready" if ready else "not ready", checks=checks, model=model), code


def _prefers_html() -> bool:
    """A browser asks for text/html over anything else; curl, probes and scripts (*/* or JSON) get JSON."""
    accept = request.accept_mimetypes
    return accept["text/html"] > accept["application/json"]
