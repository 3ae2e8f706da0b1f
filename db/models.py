"""The schema: SQLAlchemy 2.0 typed ORM. Postgres is the record of every job, document and result.

Migrations in migrations/ build exactly this schema (tests/db/test_schema.py compares them).
"""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB}


def _now_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Role(enum.StrEnum):
    USER = "user"
    ADMIN = "admin"


class DocState(enum.StrEnum):
    UPLOADED = "uploaded"      # bytes stored, waiting for extraction
    EXTRACTING = "extracting"  # a CPU worker is reading it
    QUEUED = "queued"          # text ready, waiting for a model
    PROCESSING = "processing"  # claimed by a GPU worker under a lease
    DONE = "done"
    FAILED = "failed"


class RunState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default=Role.USER.value)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = _now_column()

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, shown to the owner
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the secret
    created_at: Mapped[datetime] = _now_column()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Job(Base):
    """One upload (one or many files). Its state and progress derive from its documents."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = _now_column()
    documents: Mapped[list[Document]] = relationship(back_populates="job", order_by="Document.id")


class Blob(Base):
    """Uploaded bytes, stored once per owner and content hash."""

    __tablename__ = "blobs"
    __table_args__ = (UniqueConstraint("owner_id", "sha256", name="uq_blobs_owner_id_sha256"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _now_column()


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        Index("ix_documents_state_id", "state", "id"),
        Index("ix_documents_owner_id_created_at", "owner_id", "created_at"),
        Index("ix_documents_owner_id_filename_id", "owner_id", "filename", "id"),  # history sorted by name
        Index("ix_documents_search", "search", postgresql_using="gin"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id", ondelete="RESTRICT"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    title: Mapped[str | None] = mapped_column(String(500))
    text: Mapped[str | None] = mapped_column(Text)
    page_count: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=DocState.UPLOADED.value)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # when the last wake-up message was sent for the current state; the sweeper re-sends stale ones
    wakeup_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # retry backoff
    created_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # full-text search over title, file name and (the start of) the text
    search: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed(
            "to_tsvector('english', coalesce(title, '') || ' ' || coalesce(filename, '') || ' ' "
            "|| left(coalesce(text, ''), 200000))",
            persisted=True,
        ),
        nullable=True,
    )

    job: Mapped[Job] = relationship(back_populates="documents")
    results: Mapped[list[Result]] = relationship(back_populates="document", order_by="Result.id")


class ModelVersion(Base):
    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)  # e.g. "v3"
    path: Mapped[str] = mapped_column(Text)  # the artifact folder
    source: Mapped[str] = mapped_column(String(32))  # base | starter | trained | import
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    training_run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id", ondelete="SET NULL"))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _now_column()
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the last failure of a worker to load this version's artifact (cleared by a good load or activation)
    load_error: Mapped[str | None] = mapped_column(Text)
    load_failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# at most one active version
Index(
    "uq_model_versions_one_active",
    ModelVersion.is_active,
    unique=True,
    postgresql_where=ModelVersion.is_active.is_(True),
)


class Result(Base):
    __tablename__ = "results"
    __table_args__ = (
        UniqueConstraint("document_id", "model_version_id", name="uq_results_document_id_model_version_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"), index=True)
    summary: Mapped[str] = mapped_column(Text)
    topic_label: Mapped[str | None] = mapped_column(String(100), index=True)
    topic_score: Mapped[float | None] = mapped_column(Float)
    topic_scores: Mapped[dict[str, Any]] = mapped_column(default=dict)  # label -> probability
    # [{"label", "score", "threshold", "selected"}], every label, highest score first
    emotions: Mapped[list[Any]] = mapped_column(default=list)
    emotion_labels: Mapped[list[Any]] = mapped_column(default=list)  # the selected labels, for filtering
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)  # seconds per stage
    reused_from_id: Mapped[int | None] = mapped_column(ForeignKey("results.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now_column()

    document: Mapped[Document] = relationship(back_populates="results")
    model_version: Mapped[ModelVersion] = relationship()


class Feedback(Base):
    """A person's correction of a result; becomes a training example."""

    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    result_id: Mapped[int | None] = mapped_column(ForeignKey("results.id", ondelete="SET NULL"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    topic_label: Mapped[str | None] = mapped_column(String(100))
    emotion_labels: Mapped[list[Any] | None] = mapped_column(JSONB)
    summary: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now_column()


class TrainingRun(Base):
    __tablename__ = "training_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16), default=RunState.QUEUED.value, index=True)
    # what was asked: datasets, tasks, epochs, learning rate, lora or full, ...
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # live: {"step", "total_steps", "loss", "eta_s", "epoch", "phase"}
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    history: Mapped[list[Any]] = mapped_column(default=list)  # [{"step", "loss", "lr"}]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error_message: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL", use_alter=True)
    )
    created_at: Mapped[datetime] = _now_column()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
