"""Settings read from the environment, shared by the web app, the workers and the CLI.

Everything has a default that works on one machine with nothing configured: no DATABASE_URL / BROKER_URL
means the embedded PostgreSQL and Redis (see leximind.services) are started under DATA_DIR.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _find_shared_data() -> Path:
    """The corpora live beside the checkout (../shared/data); a checkout elsewhere falls back to /work."""
    beside = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    for candidate in (beside, Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    return beside


SHARED_DATA = _find_shared_data()


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("LEXIMIND_DATA_DIR", "var")).resolve())
    database_url: str | None = field(default_factory=lambda: os.environ.get("DATABASE_URL") or None)
    broker_url: str | None = field(default_factory=lambda: os.environ.get("BROKER_URL") or None)
    secret_key: str = field(default_factory=lambda: os.environ.get("SECRET_KEY", ""))
    # where model versions (artifact folders) live
    models_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("LEXIMIND_MODELS_DIR", "var/models")).resolve()
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
