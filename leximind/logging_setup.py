"""Logging for every LexiMind process: one JSON object per line (or plain text), secrets never written.

``configure_logging("worker")`` sets up the root logger once per process. The format comes from
``LEXIMIND_LOG_FORMAT`` (``json`` or ``text``; default ``text`` on a terminal, ``json`` otherwise) and the
level from ``LEXIMIND_LOG_LEVEL`` (default INFO). A JSON line carries ``ts`` (UTC, ISO 8601), ``level``,
``logger``, ``service``, ``pid``, ``message``, any ``extra={...}`` fields the call passed, and ``exc`` with
the traceback when there is one.

Redaction runs on every record, whichever handler writes it, before formatting: API tokens (``lm_...``),
``Bearer`` credentials, passwords inside URLs (``scheme://user:password@host``), ``password=``/``secret=``/
``token=`` pairs, and the exact values of SECRET_KEY and of the passwords in DATABASE_URL / BROKER_URL.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

REDACTED = "[redacted]"
_PATTERNS = [
    (re.compile(r"\blm_[A-Za-z0-9_\-]{16,}"), REDACTED),  # our API tokens (db.accounts.TOKEN_PREFIX)
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]+"), r"\1 " + REDACTED),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]*):[^\s@/]+@"), r"\1:" + REDACTED + "@"),
    (re.compile(r"""(?i)\b(password|passwd|secret|secret_key|token|api_key)(["']?\s*[=:]\s*["']?)[^\s"',&;}]+"""),
     r"\1\2" + REDACTED),
]
# attributes every LogRecord has; anything else on a record came from ``extra=`` and goes into the JSON
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def known_secrets(environ: os._Environ | dict[str, str] | None = None) -> list[str]:
    """Exact secret values this process knows from its environment (8 characters or more)."""
    environ = os.environ if environ is None else environ
    found = [environ.get("SECRET_KEY", "")]
    for name in ("DATABASE_URL", "BROKER_URL", "TEST_DATABASE_ADMIN_URL"):
        try:
            password = urlsplit(environ.get(name, "")).password
        except ValueError:
            password = None
        if password:
            found += [password, unquote(password)]
    return sorted({s for s in found if len(s) >= 8}, key=len, reverse=True)


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (arguments merged in) and traceback text with secrets removed."""

    def __init__(self, secrets: list[str] | None = None):
        super().__init__()
        self.secrets = known_secrets() if secrets is None else secrets

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message, self.secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        record.exc_info = None  # the redacted text above is what gets written
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value, self.secrets))
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "service": self.service,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool | type(None)) else repr(value)
        if record.exc_text or record.exc_info:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def log_format(environ: os._Environ | dict[str, str] | None = None, stream: Any = None) -> str:
    environ = os.environ if environ is None else environ
    chosen = environ.get("LEXIMIND_LOG_FORMAT", "").strip().lower()
    if chosen in ("json", "text"):
        return chosen
    stream = stream or sys.stderr
    return "text" if hasattr(stream, "isatty") and stream.isatty() else "json"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record arrives (it may be swapped after set-up)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(service: str, *, level: str | None = None, stream: Any = None) -> logging.Handler:
    """Give the root logger one redacting handler on ``stream`` (default: the current stderr).

    Calling it again replaces the handler it installed before; handlers someone else installed stay."""
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.addFilter(RedactingFilter())
    if log_format(stream=stream) == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.set_name("leximind")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "leximind"]:
        root.removeHandler(old)
    root.addHandler(handler)
    wanted = (level or os.environ.get("LEXIMIND_LOG_LEVEL") or "INFO").strip().upper()
    known = isinstance(logging.getLevelName(wanted), int)
    root.setLevel(wanted if known else logging.INFO)
    logging.captureWarnings(True)
    if not known:  # a typo in a logging setting should not stop the service, nor pass unsaid
        logging.getLogger("leximind").warning(
            "LEXIMIND_LOG_LEVEL %r is not a level (DEBUG, INFO, WARNING, ERROR, CRITICAL); logging at INFO", wanted)
    return handler


def gunicorn_logger_class() -> type:
    """``gunicorn --logger-class leximind.logging_setup.GunicornLogger``: its error and access logs redacted,
    and JSON like every other process; the app's own loggers (root) get the same handler when nothing set
    one up. gunicorn is imported only when the web server asks for this class."""
    from gunicorn.glogging import Logger

    class RedactingGunicornLogger(Logger):
        def setup(self, cfg) -> None:
            super().setup(cfg)
            if not logging.getLogger().handlers:
                configure_logging("web")
            json_lines = log_format() == "json"
            for logger in (self.error_log, self.access_log):
                for handler in logger.handlers:
                    handler.addFilter(RedactingFilter())
                    if json_lines:
                        handler.setFormatter(JsonFormatter("web"))

    return RedactingGunicornLogger


def __getattr__(name: str) -> type:
    if name == "GunicornLogger":
        return gunicorn_logger_class()
    raise AttributeError(name)
