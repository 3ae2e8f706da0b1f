"""The production shape as written: `docker-compose config` renders docker-compose.yml, and it holds every
service the design asks for, with health checks, the NVIDIA runtime for the GPU worker, and no secret in the
file itself. (No Docker engine runs here; the Dockerfile is checked by reading it.)"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SECRETS = {"POSTGRES_PASSWORD": "pg-pass-for-the-test", "SECRET_KEY": "secret-key-for-the-test",
           "FLOWER_BASIC_AUTH": "ops:flower-pass-for-the-test"}
SERVICES = {"postgres", "redis", "migrate", "web", "worker-cpu", "worker-gpu", "worker-train", "beat", "flower"}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is not installed (Debian package docker-compose; `make system-deps`)"
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run([binary, "-f", str(REPO / "docker-compose.yml"), "config"], cwd=REPO,
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def rendered() -> dict:
    result = compose_config(SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_every_service_is_there_with_its_role(rendered):
    services = rendered["services"]
    assert set(services) == SERVICES
    web = services["web"]
    assert web["command"][0] == "gunicorn" and "webapp:create_app()" in web["command"]
    assert "leximind.logging_setup.GunicornLogger" in web["command"]
    assert services["worker-cpu"]["command"][:4] == ["leximind", "worker", "-Q", "extract,maintenance"]
    # training in a worker of its own: a run of hours never holds up inference
    assert services["worker-gpu"]["command"][:4] == ["leximind", "worker", "-Q", "infer"]
    assert services["worker-train"]["command"][:4] == ["leximind", "worker", "-Q", "train"]
    assert services["beat"]["command"] == ["leximind", "beat"]
    assert services["migrate"]["command"] == ["leximind", "migrate"]
    for name in ("web", "worker-cpu", "worker-gpu", "worker-train", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://") and env["BROKER_URL"].startswith("redis://")
        assert env["LEXIMIND_LOG_FORMAT"] == "json"


@pytest.mark.parametrize("name", ["worker-gpu", "worker-train"])
def test_gpu_workers_run_on_the_nvidia_runtime(rendered, name):
    gpu = rendered["services"][name]
    assert gpu["runtime"] == "nvidia"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert gpu["environment"]["LEXIMIND_DEVICE"] == "cuda"
    assert gpu["build"]["args"]["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/cu")


def test_health_checks_and_graceful_stops(rendered):
    services = rendered["services"]
    for name in ("postgres", "redis", "web", "worker-cpu", "worker-gpu", "worker-train"):
        assert services[name]["healthcheck"]["test"], name
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    for name in ("worker-cpu", "worker-gpu", "worker-train"):
        assert "inspect ping" in " ".join(services[name]["healthcheck"]["test"])
        assert services[name]["stop_grace_period"] in ("90s", "120s", "1m30s", "2m")
    assert str(services["flower"]["ports"][0]).startswith("127.0.0.1:"), "Flower is for operators on this host"


def test_secrets_come_from_the_environment_only():
    text = (REPO / "docker-compose.yml").read_text()
    for value in SECRETS.values():
        assert value not in text
    for name in SECRETS:
        missing = compose_config({k: v for k, v in SECRETS.items() if k != name})
        assert missing.returncode != 0 and name in missing.stderr, (name, missing.stderr[-300:])


def test_dockerfile_copies_what_exists_and_pins_torch_like_the_makefile():
    dockerfile = (REPO / "Dockerfile").read_text()
    for source in re.findall(r"^COPY\s+(\S+)", dockerfile, flags=re.M):
        for part in source.split():
            assert (REPO / part).exists(), f"Dockerfile copies {part}, which is not in the repository"
    pinned = re.search(r"TORCH_VERSION=(\S+)", dockerfile).group(1)
    assert f"torch=={pinned}" in (REPO / "Makefile").read_text()
    assert "USER leximind" in dockerfile and "HEALTHCHECK" in dockerfile
    from leximind.logging_setup import GunicornLogger  # what the CMD names must import

    assert GunicornLogger.__name__
