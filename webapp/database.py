"""One database session per request, closed (and any unfinished transaction rolled back) at teardown.

Views commit what they change; nothing is committed implicitly.
"""
from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from db.session import get_sessionmaker


def get_db() -> Session:
    if "db" not in g:
        g.db = get_sessionmaker(current_app.config["DATABASE_URL"])()
    return g.db


def _close_db(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db", None)
    if session is not None:
        session.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_close_db)
