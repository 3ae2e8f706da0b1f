"""Jinja filters: sizes, times, durations and state names the way people read them."""
from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask

from webapp.training_params import describe as run_settings

STATE_WORDS = {
    "uploaded": "Waiting to be read", "extracting": "Reading", "queued": "In the queue",
    "processing": "Processing", "done": "Done", "partial": "Done, some failed", "failed": "Failed",
    "running": "Running", "succeeded": "Succeeded", "cancelled": "Cancelled",
}


def file_size(n: int | None) -> str:
    if n is None:
        return "—"
    if n < 1024:
        return f"{n} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if n < 10 else f"{n:.0f} {unit}"
    return f"{n:.0f} GB"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s" if minutes < 10 else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def timestamp(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def ago(value: datetime | None) -> str:
    if value is None:
        return "—"
    seconds = (datetime.now(UTC) - value).total_seconds()
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        return f"{round(seconds / 60)} min ago"
    if seconds < 86400:
        return f"{round(seconds / 3600)} h ago"
    if seconds < 7 * 86400:
        return f"{round(seconds / 86400)} d ago"
    return value.astimezone(UTC).strftime("%Y-%m-%d")


def percent(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def stage_name(key: str) -> str:
    """A timing key as people read it: "generate_s" -> "Generate"."""
    for suffix in ("_seconds", "_s", "_ms"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    return key.replace("_", " ").capitalize()


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(
        file_size=file_size, duration=duration, stage_name=stage_name, timestamp=timestamp, ago=ago, percent=percent,
        state_words=lambda state: STATE_WORDS.get(state, state),
    )
    app.jinja_env.globals.update(STATE_WORDS=STATE_WORDS, run_settings=run_settings)
