"""Web fixtures: the app factory over the session's real Postgres (emptied per test) and private Redis."""
from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from db import accounts
from db.session import session_scope
from tests.web import seed
from webapp import create_app

PASSWORD = "correct horse battery"


@dataclass
class Person:
    id: int
    email: str
    token: str
    role: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_config(database_url: str, redis_url: str, **overrides) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-" + uuid.uuid4().hex,
        "DATABASE_URL": database_url,
        "BROKER_URL": redis_url,
        "SESSION_COOKIE_SECURE": False,
        "REMEMBER_COOKIE_SECURE": False,
        "UPLOAD_RATE_LIMIT": "1000 per minute",
        "LOGIN_RATE_LIMIT": "1000 per minute",
        "TRAINING_RATE_LIMIT": "1000 per minute",
        "READY_WORKER_TIMEOUT": 0.3,
        "THROUGHPUT_TTL_S": 0.0,
        **overrides,
    }


@pytest.fixture()
def app_factory(clean_db: str, redis_url: str):
    """Build an app with extra settings; rate-limit counters start from zero for each test."""
    redis.Redis.from_url(redis_url).flushdb()

    def build(**overrides) -> Flask:
        return create_app(make_config(clean_db, redis_url, **overrides))

    return build


@pytest.fixture()
def app(app_factory) -> Flask:
    return app_factory()


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _person(database_url: str, email: str, role: str = "user") -> Person:
    with session_scope(database_url) as session:
        user = accounts.create_user(session, email, PASSWORD, role)
        issued = accounts.issue_token(session, user.id, "tests")
        return Person(user.id, user.email, issued.secret, role)


@pytest.fixture()
def alice(clean_db: str) -> Person:
    return _person(clean_db, "alice@example.com")


@pytest.fixture()
def bob(clean_db: str) -> Person:
    return _person(clean_db, "bob@example.com")


@pytest.fixture()
def admin(clean_db: str) -> Person:
    return _person(clean_db, "admin@example.com", "admin")


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client: FlaskClient, person: Person) -> str:
    """Sign in through the form; returns a CSRF token for later posts."""
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": person.email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return csrf_from(client.get("/account").get_data(as_text=True))


@pytest.fixture()
def world(clean_db: str, alice: Person, bob: Person, admin: Person) -> Iterator[seed.World]:
    """Alice and Bob each own a finished job; there are two model versions and a training run."""
    yield seed.build_world(clean_db, alice, bob, admin)
