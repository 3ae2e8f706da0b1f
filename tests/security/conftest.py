"""Security-test fixtures, reused as they are: the web tests' app, people and seeded world
(tests/web/conftest.py), the e2e harness's API client and owner (tests/e2e/conftest.py), and the fault
tests' quick tiny model (tests/faults/conftest.py)."""
from __future__ import annotations

from tests.e2e.conftest import api, owner  # noqa: F401
from tests.faults.conftest import quick_artifact  # noqa: F401
from tests.web.conftest import admin, alice, app, app_factory, bob, client, world  # noqa: F401
