"""A real HTTP server for the app, and a stand-in worker that moves documents and training runs along.

The stand-in calls the workers' own plain functions: real extraction (workers.extract_step) and the real
inference loop (workers.inference.process_queue, with its claims, leases and guarded writes); only the
model is replaced by a keyword predictor, so browser tests need neither torch nor a checkpoint.
Training runs are advanced by hand through db.training_runs, as the training job would.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

from db import training_runs
from db.models import DocState, Document, RunState, TrainingRun
from db.session import session_scope
from db.versions import active_version_id, register_version
from leximind.config import JobTuning, Settings
from tests.workers.fakes import FakeEmotion, FakeTopic
from workers.extract_step import extract_document
from workers.inference import process_queue

log = logging.getLogger(__name__)


class LiveServer:
    """The app behind werkzeug's threaded server on a free loopback port."""

    def __init__(self, app: Flask):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="live-server", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


TOPIC_WORDS = {
    "Sports": ("match", "goal", "team", "season", "football", "cricket", "olympic", "championship", "coach"),
    "Business": ("market", "stock", "bank", "company", "profit", "economy", "tax", "trade", "revenue"),
    "Sci/Tech": ("software", "computer", "internet", "mozilla", "browser", "science", "research", "python"),
}
EMOTION_WORDS = {"joy": ("win", "great", "happy", "good"), "sadness": ("loss", "sad", "died"),
                 "anger": ("angry", "furious"), "surprise": ("sudden", "unexpected", "surprise")}
EMOTIONS = ("joy", "sadness", "anger", "fear", "surprise", "neutral")


@dataclass
class KeywordPrediction:
    """Shaped like model.predictions.DocumentPrediction (docs/contracts.md), without importing model/."""

    summary: str
    topic: FakeTopic
    emotions: list[FakeEmotion]
    model_version: str
    timings: dict[str, float] = field(default_factory=lambda: {"encode_s": 0.004, "generate_s": 0.021})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class KeywordPredictor:
    """Stands in for model.pipeline.Pipeline: counts keywords; `delay_s` per call makes progress visible."""

    def __init__(self, version: str, delay_s: float = 0.0):
        self.version, self.delay_s = version, delay_s

    def run(self, texts: list[str]) -> list[KeywordPrediction]:
        time.sleep(self.delay_s)
        return [self._predict(text) for text in texts]

    def _predict(self, text: str) -> KeywordPrediction:
        words = re.findall(r"[a-z]+", text.lower())
        counts = {topic: sum(w.startswith(k) for w in words for k in keys) for topic, keys in TOPIC_WORDS.items()}
        counts["World"] = 1
        total = sum(counts.values()) + 2
        topics = {t: round((c + 0.5) / total, 4) for t, c in counts.items()}
        norm = sum(topics.values())
        topics = {t: round(v / norm, 4) for t, v in topics.items()}
        emotions = {e: 0.1 for e in EMOTIONS}
        for emotion, keys in EMOTION_WORDS.items():
            hits = sum(w in keys for w in words)
            emotions[emotion] = round(min(0.95, 0.1 + 0.2 * hits), 3)
        if max(emotions.values()) < 0.5:
            emotions["neutral"] = 0.72
        sentences = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
        summary = " ".join(sentences[:2])[:280] or "(empty)"
        label = max(topics, key=topics.get)
        ranked = sorted(emotions.items(), key=lambda item: -item[1])
        return KeywordPrediction(
            summary, FakeTopic(label, topics[label], topics),
            [FakeEmotion(e, score, 0.5, score >= 0.5) for e, score in ranked], self.version)


class StandInWorker:
    """Extracts uploaded documents, runs queued ones through the inference loop, advances training runs."""

    def __init__(self, database_url: str, *, delay_s: float = 0.6, train_step_s: float = 0.4,
                 total_steps: int = 120):
        self.database_url = database_url
        self.settings = Settings(database_url=database_url, claim_batch_size=1, lease_seconds=30)
        self.tuning = JobTuning(infer_batch_docs=1, retry_base_s=0.0, retry_max_s=0.0)
        self.delay_s, self.train_step_s, self.total_steps = delay_s, train_step_s, total_steps
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stand-in-worker", daemon=True)
        self.errors: list[BaseException] = []

    def __enter__(self) -> StandInWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._extract()
                process_queue(self.database_url, lambda v: KeywordPredictor(v.name, self.delay_s),
                              settings=self.settings, tuning=self.tuning, worker_name="stand-in", max_rounds=1)
                self._train()
            except Exception as exc:  # surfaced by the test, which checks .errors
                log.exception("stand-in worker failed")
                self.errors.append(exc)
            self._stop.wait(0.2)

    def _extract(self) -> None:
        with session_scope(self.database_url) as session:
            ids = session.scalars(select(Document.id).where(Document.state == DocState.UPLOADED.value)
                                  .order_by(Document.id)).all()
        for document_id in ids:
            extract_document(self.database_url, document_id, settings=self.settings, tuning=self.tuning,
                             worker_name="stand-in")

    def _train(self) -> None:
        with session_scope(self.database_url) as session:
            run = session.scalar(select(TrainingRun).where(TrainingRun.state.in_(training_runs.ACTIVE_STATES))
                                 .order_by(TrainingRun.id).limit(1))
            if run is None:
                return
            if run.state == RunState.QUEUED.value:
                training_runs.start_run(session, run.id, "stand-in")
                return
            step = int((run.progress or {}).get("step") or 0) + 5
            loss = round(2.2 * 0.985 ** step + 0.35, 4)
            if step > self.total_steps:
                metrics = {"topic": {"accuracy": 0.88}, "emotion": {"f1": 0.49}, "summary": {"rougeL": 0.31},
                           "eval_loss": loss + 0.1}
                # like the training job: the first version becomes active, later ones wait for an admin
                version = register_version(session, path=f"/models/run-{run.id}", source="trained",
                                           training_run_id=run.id, metrics=metrics,
                                           activate=active_version_id(session) is None)
                training_runs.finish_run(session, run.id, RunState.SUCCEEDED.value, metrics=metrics,
                                         model_version_id=version.id)
                return
            remaining = max(self.total_steps - step, 0) / 5 * self.train_step_s
            training_runs.update_progress(
                session, run.id,
                {"step": step, "total_steps": self.total_steps, "loss": loss, "epoch": 1 + step // 60,
                 "eta_s": remaining, "phase": "training"},
                # like the training job's ProgressWriter: an evaluation adds dev_loss to its point
                [{"step": step, "loss": loss, "lr": 3e-4 * min(1.0, step / 20),
                  **({"dev_loss": round(loss + 0.15, 4)} if step % 20 == 0 else {})}],
            )
        self._stop.wait(self.train_step_s)
