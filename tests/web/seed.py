"""Test data written straight through the ORM, standing in for workers and training runs."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from db.models import DocState, Document, ModelVersion, Result, TrainingRun
from db.session import session_scope
from db.uploads import UploadedFile, create_job
from db.versions import activate_version, register_version

TOPICS = ("World", "Sports", "Business", "Sci/Tech")
EMOTIONS = ("joy", "sadness", "anger", "fear", "surprise", "neutral")


def topic_scores(label: str) -> dict[str, float]:
    rest = (1 - 0.7) / (len(TOPICS) - 1)
    return {t: (0.7 if t == label else round(rest, 4)) for t in TOPICS}


def emotion_scores(selected: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = [{"label": e, "score": 0.8 if e in selected else 0.1, "threshold": 0.5, "selected": e in selected}
            for e in EMOTIONS]
    return sorted(rows, key=lambda r: -r["score"])


def result_row(document_id: int, version_id: int, topic: str, emotions: tuple[str, ...], summary: str) -> dict:
    return {
        "document_id": document_id, "model_version_id": version_id, "summary": summary,
        "topic_label": topic, "topic_score": 0.7, "topic_scores": topic_scores(topic),
        "emotions": emotion_scores(emotions), "emotion_labels": list(emotions),
        "timings": {"encode_s": 0.012, "generate_s": 0.2},
    }


def upload(database_url: str, owner_id: int, files: dict[str, str]) -> tuple[int, list[int]]:
    with session_scope(database_url) as session:
        job, docs = create_job(session, owner_id, [UploadedFile(name, text.encode()) for name, text in files.items()])
        return job.id, [d.id for d in docs]


def finish(database_url: str, document_id: int, version_id: int, *, text: str, topic: str,
           emotions: tuple[str, ...] = ("joy",), summary: str | None = None, title: str | None = None,
           created_at: datetime | None = None) -> None:
    """The document as a worker leaves it: text extracted, a result written, state done."""
    with session_scope(database_url) as session:
        values: dict[str, Any] = {"state": DocState.DONE.value, "text": text, "title": title,
                                  "finished_at": datetime.now(UTC)}
        if created_at:
            values["created_at"] = created_at
        session.execute(update(Document).where(Document.id == document_id).values(**values))
        session.add(Result(**result_row(document_id, version_id, topic, emotions, summary or text[:80])))


def fail(database_url: str, document_id: int, code: str, message: str) -> None:
    with session_scope(database_url) as session:
        session.execute(update(Document).where(Document.id == document_id).values(
            state=DocState.FAILED.value, error_code=code, error_message=message, finished_at=datetime.now(UTC)))


def version(database_url: str, name: str, metrics: dict, active: bool = False) -> int:
    with session_scope(database_url) as session:
        v = register_version(session, path=f"/models/{name}", source="trained", name=name, metrics=metrics)
        if active:
            activate_version(session, v.id)
        return v.id


@dataclass
class World:
    v1: int
    v2: int
    alice_job: int
    alice_docs: list[int]
    bob_job: int
    bob_docs: list[int]
    run_id: int
    ids: dict[str, int] = field(default_factory=dict)


def build_world(database_url: str, alice, bob, admin) -> World:
    v1 = version(database_url, "v1", {"topic": {"accuracy": 0.81}, "emotion": {"f1": 0.42}, "eval_loss": 1.9})
    v2 = version(database_url, "v2", {"topic": {"accuracy": 0.86}, "emotion": {"f1": 0.47}, "eval_loss": 1.7},
                 active=True)
    alice_job, alice_docs = upload(database_url, alice.id, {
        "markets.txt": "Stocks rallied as markets cheered the central bank decision.",
        "broken.pdf": "%PDF-1.4 not really",
        "waiting.txt": "A document still waiting in the queue.",
    })
    finish(database_url, alice_docs[0], v1, text="Stocks rallied as markets cheered the central bank.",
           topic="World", emotions=("neutral",))
    finish(database_url, alice_docs[0], v2, text="Stocks rallied as markets cheered the central bank.",
           topic="Business", emotions=("joy", "surprise"), title="Markets rally")
    fail(database_url, alice_docs[1], "corrupt_file", "The PDF is damaged and cannot be read. Save it again.")
    bob_job, bob_docs = upload(database_url, bob.id, {"bob-secret.txt": "Bob's private football notes."})
    finish(database_url, bob_docs[0], v2, text="Bob's private football notes.", topic="Sports")
    with session_scope(database_url) as session:
        run = TrainingRun(created_by_id=admin.id, state="succeeded", model_version_id=v2,
                          params={"recipe": "finetune", "datasets": ["ag_news"], "include_feedback": True,
                                  "epochs": 1, "train": {"tasks": ["topic"], "learning_rate": 3e-4, "mode": "lora"}},
                          progress={"step": 100, "total_steps": 100, "loss": 0.61, "eta_s": 0, "phase": "succeeded"},
                          history=[{"step": s, "loss": 2.0 - s / 80} for s in range(0, 101, 10)],
                          metrics={"topic": {"accuracy": 0.86}, "eval_loss": 1.7},
                          started_at=datetime.now(UTC) - timedelta(minutes=5), finished_at=datetime.now(UTC))
        session.add(run)
        session.flush()
        session.execute(update(ModelVersion).where(ModelVersion.id == v2).values(training_run_id=run.id))
        run_id = run.id
    return World(v1, v2, alice_job, alice_docs, bob_job, bob_docs, run_id)
