"""Which model the workers run, and what happens when there is none yet.

1. the active registered version;
2. else the configured base model (``LEXIMIND_BASE_MODEL``: a checkpoint folder or a hub id) imported as
   the first version (``source="base"``);
3. else (no such folder, no hub reachable) a starter training run is created and enqueued; it is an
   ordinary training run, visible with its progress, and documents wait in the queue until it registers
   a version (``db.versions.model_status`` tells the web what to say meanwhile).

Only one process resolves at a time (a Postgres advisory lock); the others return None and their
documents stay queued. A failed starter run is started again, visibly, as a new run: up to
``LEXIMIND_STARTER_TRIES`` runs in all, the n-th restart ``LEXIMIND_STARTER_RETRY_SECONDS * 2**(n-1)``
after the failure (the infer task and the sweeper both check; the infer task first tries the base model
again, it may have been set up since). A cancelled one is not: a person decided. Once the tries are
spent (or while a starter run is going), a base model that is a folder on this machine is imported as
soon as it is there, which is what the failed status tells an admin to do; a folder that does not load
is tried again after ``LEXIMIND_MODEL_RETRY_SECONDS``, and starts no training run.

Which version runs (:func:`serving_predictor`): the active one; if its artifact does not load, the
failure is recorded on the version row, the previous good version serves meanwhile (without one,
documents wait queued, uncharged), and the active one is tried again after ``LEXIMIND_MODEL_RETRY_SECONDS``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy import func, select

from db.models import ModelVersion
from db.session import get_engine, session_scope
from db.versions import (
    RESOLUTION_LOCK,
    active_version,
    clear_load_failure,
    record_load_failure,
    register_version,
    serving_version,
    starter_params,
    starter_restart_due,
    starter_run,
    starter_tries,
)
from leximind.config import JobTuning, Settings
from leximind.messaging import enqueue_training

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json")


def ensure_model(
    database_url: str, settings: Settings, celery: Celery, tuning: JobTuning | None = None
) -> ModelVersion | None:
    """The active version, or None while one is being set up (see the module docstring)."""
    tuning = tuning or JobTuning()
    version, _, act = _setup_needed(database_url)
    if not act and (version is not None or not _base_model_folder(settings, tuning)):
        return version
    with _resolution_lock(database_url) as locked:
        if not locked:
            return None  # another worker is importing or starting training right now
        version, failed_run, act = _setup_needed(database_url)
        if version is not None:
            return version
        if not act:
            # a starter run is going or its tries are spent, but a base model folder is there now (the
            # status told an admin to set one): import it; if it does not load, nothing else is started
            return _import_base(database_url, settings, tuning)
        # a restart tries the base model again first (it may have been set up since)
        after = _failure(database_url, failed_run) if failed_run is not None else None
        return _import_or_start(database_url, settings, celery, tuning, after=after)


# base model folders that did not load in this process, and when: tried again after model_retry_s
_BASE_FAILED_AT: dict[str, float] = {}


def _base_model_folder(settings: Settings, tuning: JobTuning) -> bool:
    """Whether the configured base model is a folder on this machine worth trying now (a hub id is not
    retried: it was tried when the starter run was started)."""
    failed_at = _BASE_FAILED_AT.get(settings.base_model)
    if failed_at is not None and time.monotonic() - failed_at < tuning.model_retry_s:
        return False
    return Path(settings.base_model).is_dir()


def restart_starter_if_due(database_url: str, celery: Celery, tuning: JobTuning) -> int | None:
    """The sweeper's check: start a failed starter run again once its backoff passed; the new run's id.

    Never imports a base model (the sweeper runs on CPU workers without the model code's weight).
    """
    _, failed_run, act = _setup_needed(database_url)
    if not act or failed_run is None:
        return None
    with _resolution_lock(database_url) as locked:
        if not locked:
            return None
        _, failed_run, act = _setup_needed(database_url)
        if not act or failed_run is None:
            return None
        return _start_starter_run(database_url, celery, tuning, reason=_failure(database_url, failed_run))


def _setup_needed(database_url: str) -> tuple[ModelVersion | None, int | None, bool]:
    """(active version, failed starter run due for a restart, whether a worker has to act now)."""
    with session_scope(database_url) as session:
        version = active_version(session)
        if version is not None:
            return version, None, False
        run = starter_run(session)
        if run is None:
            return None, None, True
        if starter_restart_due(session, run):
            return None, run.id, True
        return None, None, False


@contextmanager
def _resolution_lock(database_url: str) -> Iterator[bool]:
    """A session-level advisory lock, tried once: one process resolves the model at a time."""
    with get_engine(database_url).connect() as lock_conn:
        locked = bool(lock_conn.scalar(select(func.pg_try_advisory_lock(RESOLUTION_LOCK))))
        try:
            yield locked
        finally:
            if locked:
                lock_conn.scalar(select(func.pg_advisory_unlock(RESOLUTION_LOCK)))
            lock_conn.commit()


def _failure(database_url: str, run_id: int) -> str:
    from db.training_runs import get_run

    with session_scope(database_url) as session:
        run = get_run(session, run_id)
        return f"starter run {run_id} failed: {run.error_message or 'no reason recorded'}"


def _import_or_start(
    database_url: str, settings: Settings, celery: Celery, tuning: JobTuning, *, after: str | None = None
) -> ModelVersion | None:
    try:
        folder, source = import_base_model(settings.base_model, settings.models_dir)
    except Exception as exc:  # noqa: BLE001 - any failure to get the base model leads to the starter run
        log.warning(
            "base model %r is not available (%s); starting the starter training run", settings.base_model, exc
        )
        reason = f"no model available: {type(exc).__name__}: {exc}"
        _start_starter_run(database_url, celery, tuning, reason=f"{after}; {reason}" if after else reason)
        return None
    return _register_base(database_url, settings, folder, source)


def _import_base(database_url: str, settings: Settings, tuning: JobTuning) -> ModelVersion | None:
    if not _base_model_folder(settings, tuning):
        return None
    try:
        folder, source = import_base_model(settings.base_model, settings.models_dir)
    except Exception:  # noqa: BLE001 - logged; the status keeps saying what an admin can do
        log.exception("base model folder %s does not load; tried again in %.0f s", settings.base_model,
                      tuning.model_retry_s)
        _BASE_FAILED_AT[settings.base_model] = time.monotonic()
        return None
    return _register_base(database_url, settings, folder, source)


def _register_base(database_url: str, settings: Settings, folder: Path, source: str) -> ModelVersion:
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


def _start_starter_run(database_url: str, celery: Celery, tuning: JobTuning, *, reason: str) -> int:
    from db.training_runs import create_run

    with session_scope(database_url) as session:
        tries = starter_tries(session) + 1
        params = starter_params(
            reason,
            tries=tries,
            max_tries=tuning.starter_tries,
            retry_after_s=tuning.starter_retry_after(tries),
        )
        run = create_run(session, params)
    enqueue_training(celery, run.id)
    log.info(
        "starter training run %d enqueued (try %d of %d): %s", run.id, tries, tuning.starter_tries, reason
    )
    return run.id


def serving_predictor(
    database_url: str, predictor_for: Callable[[ModelVersion], Any], retry_after_s: float
) -> tuple[ModelVersion, Any] | None:
    """The version to run now and its loaded predictor, or None (documents stay queued, uncharged).

    A version that fails to load gets the failure recorded on its row, and the next candidate is tried:
    each at most once per call, so a broken artifact costs one load attempt, not a spin.
    """
    failed: set[int] = set()
    while True:
        with session_scope(database_url) as session:
            version = serving_version(session, retry_after_s, exclude=failed)
        if version is None:
            return None
        try:
            predictor = predictor_for(version)
        except Exception as exc:  # noqa: BLE001 - any load failure is recorded and shown; the next one is tried
            log.exception("model version %s at %s does not load", version.name, version.path)
            with session_scope(database_url) as session:
                record_load_failure(session, version.id, f"{type(exc).__name__}: {exc}")
            failed.add(version.id)
            continue
        if version.load_error is not None:
            with session_scope(database_url) as session:
                clear_load_failure(session, version.id)
            log.info("model version %s loads again", version.name)
        return version, predictor


def load_at_start(
    database_url: str, predictor_for: Callable[[ModelVersion], Any]
) -> tuple[ModelVersion, Any] | None:
    """A new worker process loads the active version even if it failed to load a moment ago: the process
    may run fixed code or find the files restored (a restart is how people say "try again"); a failure is
    recorded again and the previous good version serves, as in ``serving_predictor``."""
    return serving_predictor(database_url, predictor_for, retry_after_s=0.0)


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
