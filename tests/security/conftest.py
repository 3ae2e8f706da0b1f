"""Security-test fixtures: the web tests' app, people and seeded world (tests/web/conftest.py), reused as is."""
from __future__ import annotations

from tests.web.conftest import admin, alice, app, app_factory, bob, client, world  # noqa: F401
