"""Fixtures for the job-system tests: a user, queued documents, an active (fake) model version."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from db.models import DocState, Document, User
from db.session import session_scope
from db.uploads import UploadedFile, create_job
from db.versions import register_version
from leximind.config import JobTuning, Settings


@pytest.fixture()
def settings(clean_db: str) -> Settings:
    return Settings(database_url=clean_db, claim_batch_size=16, lease_seconds=30, max_attempts=3)


@pytest.fixture()
def tuning() -> JobTuning:
    return JobTuning(
        infer_batch_docs=8, infer_batch_tokens=100_000, retry_base_s=0.0, retry_max_s=0.0, wakeup_stale_s=60.0
    )


@pytest.fixture()
def make_user(clean_db: str) -> Callable[..., int]:
    def make(email: str = "ada@example.com") -> int:
        with session_scope(clean_db) as session:
            user = User(email=email, password_hash="x", role="user")
            session.add(user)
            session.flush()
            return user.id

    return make


@pytest.fixture()
def version_id(clean_db: str) -> int:
    with session_scope(clean_db) as session:
        return register_version(session, path="/nonexistent/fake", source="import", activate=True).id


@pytest.fixture()
def queue_texts(clean_db: str, make_user) -> Callable[..., list[int]]:
    """Documents straight into ``queued`` with the given texts (extraction is tested on its own)."""

    def queue(texts: list[str], owner_id: int | None = None) -> list[int]:
        owner_id = owner_id or make_user()
        files = [UploadedFile(f"doc{i}.txt", t.encode()) for i, t in enumerate(texts)]
        with session_scope(clean_db) as session:
            _, docs = create_job(session, owner_id, files)
            for doc, t in zip(docs, texts, strict=True):
                doc.state = DocState.QUEUED.value
                doc.text = t
            return [d.id for d in docs]

    return queue


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def documents(url: str, ids: list[int] | None = None) -> dict[int, Document]:
    from sqlalchemy import select

    with session_scope(url) as session:
        query = select(Document).order_by(Document.id)
        if ids is not None:
            query = query.where(Document.id.in_(ids))
        return {d.id: d for d in session.scalars(query)}
