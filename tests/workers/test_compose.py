"""docker-compose.yml against the ``leximind`` command: every service's command is a real invocation, and
every queue has a consumer. (tests/faults/test_compose.py checks the rest of the production shape.)"""

from __future__ import annotations

import shutil

import pytest

from leximind.cli import build_parser
from leximind.queues import ALL_QUEUES
from tests.faults.test_compose import SECRETS, compose_config

yaml = pytest.importorskip("yaml")


@pytest.fixture(scope="module")
def services() -> dict:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose; `make system-deps`)")
    done = compose_config(SECRETS)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)["services"]


def test_leximind_services_run_real_commands_and_every_queue_is_consumed(services):
    parser = build_parser()
    consumed = set()
    for name, service in services.items():
        command = service.get("command") or []
        if command[:1] != ["leximind"]:
            continue
        args = parser.parse_args(command[1:])  # exits (fails the test) on an unknown subcommand or option
        if command[1] == "worker":
            assert set(args.queues) <= set(ALL_QUEUES), f"{name} consumes an unknown queue: {args.queues}"
            consumed |= set(args.queues)
    assert consumed == set(ALL_QUEUES), f"queues nobody consumes: {set(ALL_QUEUES) - consumed}"
