"""Per-process worker state: settings, the database URL, and the loaded model (one per process).

Built on first use in each process (after a fork, never inherited): the Celery signal
``worker_process_init`` calls :func:`init_process`, which also loads the active model in workers that
consume the infer queue, so the first batch does not pay for it.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from db.models import ModelVersion
from db.session import dispose_all, normalize_url
from leximind.config import JobTuning, Settings, get_settings
from workers.inference import Predictor
from workers.model_resolution import load_at_start

log = logging.getLogger(__name__)

PredictorLoader = Callable[[str, str], Predictor]


# deployment knobs for the model pipeline, read by the worker (unset: the pipeline's own defaults)
PIPELINE_ENV = {
    "LEXIMIND_TORCH_THREADS": "num_threads",  # CPU workers sharing cores with extraction: 1
    "LEXIMIND_MAX_SUMMARY_TOKENS": "max_summary_tokens",
    "LEXIMIND_PIPELINE_BATCH_ROWS": "max_batch_rows",
    "LEXIMIND_PIPELINE_BATCH_TOKENS": "max_batch_tokens",
    "LEXIMIND_NO_REPEAT_NGRAM": "no_repeat_ngram_size",  # 0: plain greedy, FLAN-T5's own output
}
# what the worker changes from the pipeline's defaults: summaries never say the same three tokens twice
# (greedy decoding of a small or briefly trained model otherwise loops: "the the the ...")
WORKER_PIPELINE = {"no_repeat_ngram_size": 3}


# LEXIMIND_INFER_DTYPE: the weights' and activations' type (unset: bf16 on CUDA, fp32 on a CPU). bf16 on a CPU
# with native bf16 (AVX-512 BF16 or AMX) decodes about 2x faster than fp32 (docs/performance.md) with slightly
# different outputs; float16 is not offered: T5's activations overflow it.
INFER_DTYPES = ("float32", "bfloat16")


class WorkerConfigError(ValueError):
    """A worker setting in the environment that cannot be used; the message names the variable."""


def pipeline_config() -> Any:
    """The worker's PipelineConfig from the environment; raises WorkerConfigError naming a bad variable."""
    from model.pipeline import PipelineConfig

    overrides: dict[str, Any] = {}
    for var, name in PIPELINE_ENV.items():
        raw = os.environ.get(var, "").strip()
        if raw:
            least = 0 if name == "no_repeat_ngram_size" else 1
            if not raw.isdigit() or int(raw) < least:
                raise WorkerConfigError(f"{var} must be a whole number of at least {least}, got {raw!r}")
            overrides[name] = int(raw)
    dtype = os.environ.get("LEXIMIND_INFER_DTYPE", "").strip()
    if dtype:
        if dtype not in INFER_DTYPES:
            raise WorkerConfigError(f"LEXIMIND_INFER_DTYPE must be one of {', '.join(INFER_DTYPES)}, got {dtype!r}")
        overrides["dtype"] = dtype
    return PipelineConfig(**{**WORKER_PIPELINE, **overrides})


def load_pipeline(path: str, device: str) -> Predictor:
    from model.pipeline import Pipeline

    return Pipeline.from_artifact(path, device=device, config=pipeline_config())


class PredictorCache:
    """Holds the predictor of one model version; loading another version replaces (and frees) it."""

    def __init__(self, device: str, loader: PredictorLoader = load_pipeline):
        self.device = device
        self.loader = loader
        self.version_id: int | None = None
        self.predictor: Predictor | None = None

    def __call__(self, version: ModelVersion) -> Predictor:
        if self.predictor is None or self.version_id != version.id:
            self.predictor, self.version_id = None, None
            gc.collect()
            log.info("loading model version %s from %s on %s", version.name, version.path, self.device)
            self.predictor = self.loader(version.path, self.device)
            self.version_id = version.id
        return self.predictor


@dataclass
class Runtime:
    settings: Settings
    tuning: JobTuning
    database_url: str
    worker_name: str
    predictors: PredictorCache
    pid: int = field(default_factory=os.getpid)


_runtime: Runtime | None = None


def database_url(settings: Settings) -> str:
    """The worker's database URL, with ``synchronous_commit=off``.

    Every write a worker makes can be redone: a claim, extracted text or a result lost with the last
    few hundred milliseconds of WAL in a database crash leaves the row in an earlier state that the
    sweeper and the next claim take up again. Uploads (the web app) keep synchronous commits; they are
    the only writes that could not be redone. Without the fsync a commit costs ~0.3 ms instead of ~3.
    """
    if not settings.database_url:
        raise RuntimeError(
            "DATABASE_URL is not set. Start workers with `leximind worker` (it finds or starts the database "
            "and passes it on) or set DATABASE_URL=postgresql://user@host/db."
        )
    return with_async_commit(settings.database_url)


def with_async_commit(url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(normalize_url(url))
    options = " ".join(filter(None, [parsed.query.get("options"), "-c synchronous_commit=off"]))
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        settings = get_settings()
        _runtime = Runtime(
            settings=settings,
            tuning=JobTuning(),
            database_url=database_url(settings),
            worker_name=f"{socket.gethostname()}:{os.getpid()}",
            predictors=PredictorCache(settings.device),
        )
    return _runtime


def init_process(celery: Celery, *, load_model: bool) -> Runtime:
    """A fresh worker process: drop pooled connections inherited from the parent, then warm up."""
    global _runtime
    if load_model:
        # a bad setting raises here, naming it, before any version is loaded and blamed for it (a Celery worker
        # has already refused to start on it: workers.celery_app's worker_init check)
        pipeline_config()
    dispose_all()
    _runtime = None
    runtime = get_runtime()
    if load_model:
        # a version that does not load is recorded and the previous good one loaded instead; the process
        # starts either way (documents wait queued when nothing loads)
        load_at_start(runtime.database_url, runtime.predictors)
    return runtime


def consumes(celery: Celery, queue: str) -> bool:
    """Whether this worker process reads ``queue`` (``-Q``/``--queues``; every queue when not given)."""
    selected: Any = celery.amqp.queues.consume_from
    return queue in selected
