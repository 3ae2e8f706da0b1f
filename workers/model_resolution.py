"""Which model the workers run, and what happens when there is none yet.

1. the active registered version;
2. else the configured base model (``LEXIMIND_BASE_MODEL``: a checkpoint folder or a hub id) imported as
   the first version (``source="base"``);
3. else (no such folder, no hub reachable) a starter training run is created and enqueued; it is an
   ordinary training run, visible with its progress, and documents wait in the queue until it registers
   a version (``db.versions.model_status`` tells the web what to say meanwhile).

Only one process resolves at a time (a Postgres advisory lock); the others return None and their
documents stay queued. A failed starter run is not restarted automatically: an admin decides.
"""

from __future__ import annotations

import logging
from pathlib import Path

from celery import Celery
from sqlalchemy import func, select

from db.models import ModelVersion
from db.session import get_engine, session_scope
from db.versions import RESOLUTION_LOCK, STARTER_RECIPE, active_version, register_version, starter_run
from leximind.config import Settings
from leximind.messaging import enqueue_training

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json")


def ensure_model(database_url: str, settings: Settings, celery: Celery) -> ModelVersion | None:
    """The active version, or None while one is being set up (see the module docstring)."""
    with session_scope(database_url) as session:
        version = active_version(session)
        if version is not None or starter_run(session) is not None:
            return version
    with get_engine(database_url).connect() as lock_conn:
        if not lock_conn.scalar(select(func.pg_try_advisory_lock(RESOLUTION_LOCK))):
            return None  # another worker is importing or starting training right now
        try:
            return _resolve_locked(database_url, settings, celery)
        finally:
            lock_conn.scalar(select(func.pg_advisory_unlock(RESOLUTION_LOCK)))
            lock_conn.commit()


def _resolve_locked(database_url: str, settings: Settings, celery: Celery) -> ModelVersion | None:
    with session_scope(database_url) as session:
        version = active_version(session)
        if version is not None or starter_run(session) is not None:
            return version
    try:
        folder, source = import_base_model(settings.base_model, settings.models_dir)
    except Exception as exc:  # noqa: BLE001 - any failure to get the base model leads to the starter run
        log.warning(
            "base model %r is not available (%s); starting the starter training run", settings.base_model, exc
        )
        return _start_starter_run(database_url, celery, reason=f"{type(exc).__name__}: {exc}")
    from model.artifacts import manifest_sha256

    with session_scope(database_url) as session:
        version = register_version(
            session,
            path=str(folder),
            source=source,
            activate=True,
            manifest_sha256=manifest_sha256(folder),
            metrics={"imported_from": settings.base_model},
        )
    log.info("imported base model %s as %s at %s", settings.base_model, version.name, folder)
    return version


def _start_starter_run(database_url: str, celery: Celery, *, reason: str) -> None:
    from db.training_runs import create_run

    with session_scope(database_url) as session:
        run = create_run(session, {"recipe": STARTER_RECIPE, "reason": f"no model available: {reason}"})
    enqueue_training(celery, run.id)
    log.info("starter training run %d enqueued", run.id)
    return None


def import_base_model(source: str, models_dir: Path) -> tuple[Path, str]:
    """The first version's folder and its ``source`` kind.

    A LexiMind artifact folder (it has a manifest) is verified and registered where it is ("import"); a
    FLAN-T5 checkpoint (folder or hub id) is read and saved as an artifact under models_dir ("base").
    """
    from model import Tokenizer, load_pretrained
    from model.artifacts import MANIFEST, goemotions_labels, save_artifact, shared_data_dir, verify_artifact

    local = Path(source)
    if (local / MANIFEST).is_file():
        verify_artifact(local)
        return local.resolve(), "import"
    topic_labels = _default_topic_labels()
    emotion_labels = goemotions_labels()
    model = load_pretrained(source, topic_labels=topic_labels, emotion_labels=emotion_labels)
    tokenizer_dir = (
        local
        if local.is_dir() and any((local / f).exists() for f in TOKENIZER_FILES)
        else (shared_data_dir() / "tokenizer")
    )
    tokenizer = Tokenizer.from_folder(tokenizer_dir)
    labels = {"topic": list(topic_labels), "emotion": list(emotion_labels), "heads_trained": False}
    target = _free_folder(models_dir, "base")
    folder = save_artifact(
        target, model, tokenizer, labels, {}, extra_manifest={"source": "base", "from": source}
    )
    return folder, "base"


def _default_topic_labels() -> tuple[str, ...]:
    from model.artifacts import BBC_TOPICS

    return BBC_TOPICS


def _free_folder(models_dir: Path, stem: str) -> Path:
    models_dir.mkdir(parents=True, exist_ok=True)
    n = 1
    while (models_dir / f"{stem}-{n}").exists():
        n += 1
    return models_dir / f"{stem}-{n}"
