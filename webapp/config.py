"""Flask settings, read from the environment through leximind.config.Settings."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from leximind.config import Settings

# Accepted uploads: what the extraction worker reads (workers/extraction/detect.py). A file with no
# extension is accepted too; the worker recognises it by its bytes.
ACCEPTED_EXTENSIONS = {
    ".pdf": "PDF", ".docx": "Word", ".html": "HTML", ".htm": "HTML", ".xhtml": "HTML",
    ".md": "Markdown", ".markdown": "Markdown", ".txt": "plain text", ".text": "plain text",
}


def _secret_key(settings: Settings) -> str:
    """SECRET_KEY from the environment, else one generated once and kept under the data folder."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


def flask_config(settings: Settings) -> dict[str, Any]:
    secure_cookies = os.environ.get("LEXIMIND_SECURE_COOKIES", "1") != "0"
    return {
        "SECRET_KEY": _secret_key(settings),
        "DATABASE_URL": settings.database_url,
        "BROKER_URL": settings.broker_url,
        # one upload request as a whole; a single file can be at most this too
        "MAX_CONTENT_LENGTH": settings.max_upload_bytes,
        # LEXIMIND_MAX_FILES: one limit for the upload page and the API (create_app raises MAX_FORM_PARTS to fit)
        "MAX_FILES_PER_UPLOAD": settings.max_files_per_upload,
        "MAX_FORM_PARTS": 1000,
        "UPLOAD_RATE_LIMIT": os.environ.get("LEXIMIND_UPLOAD_RATE_LIMIT", "60 per minute"),
        "LOGIN_RATE_LIMIT": os.environ.get("LEXIMIND_LOGIN_RATE_LIMIT", "10 per minute"),
        "TRAINING_RATE_LIMIT": os.environ.get("LEXIMIND_TRAINING_RATE_LIMIT", "10 per hour"),
        "RATELIMIT_HEADERS_ENABLED": True,
        # limits live in Redis; while it is down they are kept in memory per process, so an upload still
        # lands in Postgres (the sweeper sends its wake-ups later) instead of answering 500
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "READY_WORKER_TIMEOUT": float(os.environ.get("LEXIMIND_READY_WORKER_TIMEOUT", "1.0")),
        "SHARED_DATA": str(settings.shared_data),
        # cookies: not readable by scripts, not sent cross-site, HTTPS only (browsers allow them on loopback)
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": secure_cookies,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": secure_cookies,
        "PERMANENT_SESSION_LIFETIME": 14 * 24 * 3600,
        "REMEMBER_COOKIE_DURATION": 14 * 24 * 3600,
        # we decide per request (bearer-token API calls are exempt); a form token lives as long as the session
        "WTF_CSRF_CHECK_DEFAULT": False,
        "WTF_CSRF_TIME_LIMIT": None,
    }
