"""Settings read from the environment, shared by the web app, the workers and the CLI.

Everything has a default that works on one machine with nothing configured: no DATABASE_URL / BROKER_URL
means the embedded PostgreSQL and Redis (see leximind.services) are started under DATA_DIR.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _find_shared_data() -> Path:
    """The corpora live beside the checkout (../shared/data); a checkout elsewhere falls back to /work."""
    beside = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    for candidate in (beside, Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    return beside


SHARED_DATA = _find_shared_data()


class ConfigError(ValueError):
    """A setting in the environment that cannot be read; the message names the variable."""


def _env_number(name: str, default: float, kind: type, words: str) -> Any:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default  # unset, or set to nothing (`VAR=` in a compose or .env file)
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {words} such as {default}, not {raw!r}") from None


def _env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "a whole number")


def _env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


@dataclass
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("LEXIMIND_DATA_DIR", "var")).resolve())
    database_url: str | None = field(default_factory=lambda: os.environ.get("DATABASE_URL") or None)
    broker_url: str | None = field(default_factory=lambda: os.environ.get("BROKER_URL") or None)
    secret_key: str = field(default_factory=lambda: os.environ.get("SECRET_KEY", ""))
    # where model versions (artifact folders) live; unset: DATA_DIR/models, beside the database that names them
    models_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("LEXIMIND_MODELS_DIR")
                                     or Path(os.environ.get("LEXIMIND_DATA_DIR", "var")) / "models").resolve()
    )
    # base model: a local checkpoint folder or a hub id
    base_model: str = field(default_factory=lambda: os.environ.get("LEXIMIND_BASE_MODEL", "google/flan-t5-base"))
    # the corpora used by the starter recipe and by `leximind import`
    shared_data: Path = field(
        default_factory=lambda: Path(os.environ.get("LEXIMIND_SHARED_DATA", str(SHARED_DATA))).resolve()
    )
    # upload and extraction limits
    max_upload_bytes: int = field(default_factory=lambda: _env_int("LEXIMIND_MAX_UPLOAD_BYTES", 20 * 1024 * 1024))
    max_files_per_upload: int = field(default_factory=lambda: _env_int("LEXIMIND_MAX_FILES", 1000))
    max_pages: int = field(default_factory=lambda: _env_int("LEXIMIND_MAX_PAGES", 500))
    max_chars: int = field(default_factory=lambda: _env_int("LEXIMIND_MAX_CHARS", 2_000_000))
    extract_timeout_s: float = field(default_factory=lambda: _env_float("LEXIMIND_EXTRACT_TIMEOUT", 60.0))
    # inference loop
    claim_batch_size: int = field(default_factory=lambda: _env_int("LEXIMIND_CLAIM_BATCH", 64))
    lease_seconds: int = field(default_factory=lambda: _env_int("LEXIMIND_LEASE_SECONDS", 120))
    max_attempts: int = field(default_factory=lambda: _env_int("LEXIMIND_MAX_ATTEMPTS", 3))
    device: str = field(default_factory=lambda: os.environ.get("LEXIMIND_DEVICE", "auto"))


def get_settings() -> Settings:
    return Settings()


def _int_knob(name: str, default: int) -> Any:
    return field(default_factory=lambda: _env_int(name, default))


def _float_knob(name: str, default: float) -> Any:
    return field(default_factory=lambda: _env_float(name, default))


@dataclass
class JobTuning:
    """Job-system knobs the workers read (``Settings`` holds the ones the web app shares)."""

    # documents per model call inside one claim (the pipeline buckets by length again within it)
    infer_batch_docs: int = _int_knob("LEXIMIND_INFER_BATCH", 64)
    # a rough token budget per model call: characters / 4 summed over the batch
    infer_batch_tokens: int = _int_knob("LEXIMIND_INFER_BATCH_TOKENS", 64 * 512)
    # one infer task drains the queue for at most this long, then hands over to a fresh wake-up, so a
    # warm shutdown (which waits for the running task) takes one batch, not the whole backlog
    infer_task_seconds: float = _float_knob("LEXIMIND_INFER_TASK_SECONDS", 30.0)
    # retry backoff after a transient failure: base * 2**(attempt-1), capped, with 10% jitter
    retry_base_s: float = _float_knob("LEXIMIND_RETRY_BASE_SECONDS", 5.0)
    retry_max_s: float = _float_knob("LEXIMIND_RETRY_MAX_SECONDS", 300.0)
    # a document whose last wake-up is older than this (and is still waiting) gets another one
    wakeup_stale_s: float = _float_knob("LEXIMIND_WAKEUP_STALE_SECONDS", 60.0)
    # most wake-ups one sweep sends (the rest follow on the next sweep)
    sweep_limit: int = _int_knob("LEXIMIND_SWEEP_LIMIT", 5000)
    # a model version that failed to load is tried again after this long (meanwhile: the previous good one)
    model_retry_s: float = _float_knob("LEXIMIND_MODEL_RETRY_SECONDS", 300.0)
    # a failed starter training run is started again up to this many runs in all, the n-th restart after
    # starter_retry_base_s * 2**(n-1)
    starter_tries: int = _int_knob("LEXIMIND_STARTER_TRIES", 3)
    starter_retry_base_s: float = _float_knob("LEXIMIND_STARTER_RETRY_SECONDS", 60.0)
    # a running training run whose heartbeat is older than this is failed by the sweeper (its worker died);
    # a live run beats every TRAINING_HEARTBEAT_S (workers/training_job.py)
    training_stale_s: float = _float_knob("LEXIMIND_TRAINING_STALE_SECONDS", 300.0)

    def backoff(self, attempt: int) -> float:
        delay = min(self.retry_max_s, self.retry_base_s * 2 ** max(attempt - 1, 0))
        return delay * random.uniform(1.0, 1.1)

    def starter_retry_after(self, tries: int) -> float:
        """Seconds between the failure of the ``tries``-th starter run and the next start."""
        return self.starter_retry_base_s * 2 ** max(tries - 1, 0)
