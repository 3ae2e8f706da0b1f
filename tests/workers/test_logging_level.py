"""A mistyped LEXIMIND_LOG_LEVEL is said, and the process logs at INFO, instead of every command crashing."""
from __future__ import annotations

import io
import logging

from leximind.logging_setup import configure_logging


def test_an_unknown_log_level_falls_back_to_info_and_says_so(monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setenv("LEXIMIND_LOG_LEVEL", "verbose")
    stream = io.StringIO()
    configure_logging("test", stream=stream)
    assert root.level == logging.INFO
    assert "LEXIMIND_LOG_LEVEL 'VERBOSE' is not a level" in stream.getvalue()
    monkeypatch.setenv("LEXIMIND_LOG_LEVEL", "warning")
    configure_logging("test", stream=io.StringIO())
    assert root.level == logging.WARNING
