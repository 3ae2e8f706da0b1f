"""Fixtures for the extraction tests: the shared real-world documents and sandboxes to run them in."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.extraction import Sandbox

HOSTILE_CHILD = Path(__file__).with_name("hostile_child.py")


@pytest.fixture(scope="session")
def documents(shared_data: Path) -> Path:
    folder = shared_data / "documents"
    assert folder.is_dir(), f"{folder} is missing"
    return folder


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox()
    yield box
    box.close()


@pytest.fixture(scope="session")
def hostile_command() -> list[str]:
    """The command of a parser child that misbehaves on request (see hostile_child.py)."""
    return [sys.executable, str(HOSTILE_CHILD)]


@pytest.fixture()
def hostile_sandbox(hostile_command: list[str]) -> Iterator[Sandbox]:
    box = Sandbox(command=hostile_command)
    yield box
    box.close()
