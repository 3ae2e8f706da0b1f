"""LexiMind web application: pages for people, `/api/v1` for programs. Never imports torch or model/.

`create_app(test_config=None)` builds an app from the environment (see leximind.config.Settings);
tests pass a dict that overrides any setting.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter

from leximind.config import get_settings

log = logging.getLogger(__name__)


class DatabaseIdConverter(IntegerConverter):
    """`<int:...>` in every route: ids past PostgreSQL's integer range match no route (404, not a 500)."""

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, *args, **kwargs)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from leximind import metrics
    from webapp import auth, database, errors, health, security
    from webapp.api import api
    from webapp.config import flask_config
    from webapp.extensions import limiter
    from webapp.queue import init_app as init_queue
    from webapp.views import register_views

    app = Flask(__name__)
    app.url_map.converters["int"] = DatabaseIdConverter  # before any route is added
    app.config.from_mapping(flask_config(get_settings()))
    if test_config:
        app.config.from_mapping(test_config)
    if not app.config.get("DATABASE_URL") or not app.config.get("BROKER_URL"):
        raise RuntimeError(
            "DATABASE_URL and BROKER_URL must be set for the web app; `leximind run` or `leximind web` "
            "sets them (starting embedded PostgreSQL and Redis when none is configured)."
        )
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["BROKER_URL"])
    # each uploaded file is one multipart part: Werkzeug must allow more parts than MAX_FILES_PER_UPLOAD
    # (plus the CSRF token), or it refuses a big upload before our check can name the file limit
    app.config["MAX_FORM_PARTS"] = max(app.config["MAX_FORM_PARTS"], app.config["MAX_FILES_PER_UPLOAD"] + 10)
    # everything except the pages' own JSON is an error by default: show messages, not tracebacks
    app.config.setdefault("PROPAGATE_EXCEPTIONS", False)

    app.json.sort_keys = False  # keep the documented field order
    database.init_app(app)
    auth.init_app(app)
    security.init_app(app)
    limiter.init_app(app)
    errors.init_app(app)
    init_queue(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(api)
    register_views(app)
    metrics.init_app(app)  # /metrics for Prometheus, read from Postgres (leximind/metrics.py)
    return app
