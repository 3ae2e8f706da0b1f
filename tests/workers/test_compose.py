"""The production shape: docker-compose.yml renders, and every LexiMind service runs a real command."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from leximind.cli import build_parser
from leximind.queues import ALL_QUEUES

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
REQUIRED = {"postgres", "redis", "web", "worker-cpu", "worker-gpu", "beat"}
SECRETS = {"POSTGRES_PASSWORD": "test-password", "SECRET_KEY": "test-secret", "FLOWER_BASIC_AUTH": "ops:test"}


def render(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(
            "docker-compose is not installed (Debian package docker-compose; `make test` installs it)"
        )
    env = {k: v for k, v in os.environ.items() if k not in SECRETS} | extra_env
    return subprocess.run(
        [binary, "-f", str(COMPOSE), "config"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def services() -> dict:
    assert COMPOSE.is_file(), "docker-compose.yml is missing"
    done = render(SECRETS)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)["services"]


def test_every_part_of_the_stack_is_there(services):
    assert REQUIRED <= set(services)
    assert sum(1 for s in services.values() if "beat" in (s.get("command") or [])) == 1  # one scheduler


def test_leximind_services_run_real_commands_on_real_queues(services):
    parser = build_parser()
    for name, service in services.items():
        command = service.get("command") or []
        if command[:1] != ["leximind"]:
            continue
        args = parser.parse_args(command[1:])  # exits (fails the test) on an unknown subcommand or option
        for queue in getattr(args, "queues", None) or []:
            assert queue in ALL_QUEUES, f"{name} consumes unknown queue {queue!r}"
        env = service.get("environment") or {}
        assert env.get("DATABASE_URL", "").startswith("postgresql://"), name
        assert env.get("BROKER_URL", "").startswith("redis://"), name
    consumed = {
        q
        for s in services.values()
        if (c := s.get("command") or [])[:2] == ["leximind", "worker"]
        for q in parser.parse_args(c[1:]).queues
    }
    assert consumed == set(ALL_QUEUES), f"queues nobody consumes: {set(ALL_QUEUES) - consumed}"


def test_the_gpu_worker_gets_the_nvidia_runtime(services):
    gpu = services["worker-gpu"]
    devices = gpu.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    assert gpu.get("runtime") == "nvidia" or any(d.get("driver") == "nvidia" for d in devices)
    assert gpu["environment"].get("LEXIMIND_DEVICE") == "cuda"


def test_missing_secrets_refuse_to_render():
    done = render({})
    assert done.returncode != 0 and "POSTGRES_PASSWORD" in done.stderr
