"""Hostile input through the API and real workers: every shared document plus generated hostile files.

Each file either is refused at the door with a clear error (400/413 naming the problem), or is accepted and
ends `done` or `failed` with the reason the extraction library gives for it. No worker process dies, and
the ordinary documents uploaded alongside are processed as if nothing happened.
"""
from __future__ import annotations

import io
import random
import re
import time
import zipfile

import pytest
import redis
from sqlalchemy import select

from db.models import DocState, Document, Result
from db.session import session_scope
from tests.e2e.conftest import running_stack, upload, wait_for
from tests.extraction.builders import make_docx, make_pdf
from tests.faults import figures

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(420)]

MiB = 1024 * 1024
UNREADABLE_SHARED = {  # as tests/e2e/test_job_system.py expects
    "huckleberry_finn_p22_scanned_image_only.pdf": "no_text_layer",
    "invalid_header_and_eof_only.pdf": "corrupt_file",
    "password_protected_openpassword.pdf": "password_protected",
}
WORKER_DEATH = re.compile(r"WorkerLostError|exited with 'signal|Process '.*' pid:\d+ exited")


def docx_bomb() -> bytes:
    """A real DOCX plus 64 MiB of zeros (about 64 KB compressed)."""
    out = io.BytesIO(make_docx(lambda d: d.add_paragraph("A real paragraph.")))
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/media/image1.png", bytes(64 * MiB))
    return out.getvalue()


def hostile_files() -> dict[str, tuple[bytes, set[str]]]:
    """name -> (bytes, acceptable outcomes: "done" or failure codes)."""
    nested = "<div>" * 60_000 + "deep inside the nesting" + "</div>" * 60_000
    return {
        "one-byte.txt": (b"a", {"done"}),
        "one-byte.pdf": (b"\x00", {"corrupt_file", "unsupported_type"}),
        "junk.pdf": (random.Random(0).randbytes(64 * 1024), {"corrupt_file"}),
        "junk-with-header.pdf": (b"%PDF-1.7\n" + random.Random(1).randbytes(64 * 1024), {"corrupt_file"}),
        "bomb.docx": (docx_bomb(), {"decompression_bomb"}),
        "thousands-of-pages.pdf": (make_pdf(3000), {"too_many_pages"}),
        "deeply-nested.html": (f"<html><body><p>before</p>{nested}<p>after</p></body></html>".encode(), {"done"}),
        "unclosed.html": (("<html><body>" + "<span><b><i>" * 30_000 + "text at the bottom").encode(), {"done"}),
        "only-script.html": (b"<html><script>alert(1)</script></html>", {"no_text"}),
        "../../etc/passwd.txt": (b"root:x:0:0 but only plain words here", {"done"}),
        "..\\..\\boot.ini.txt": (b"plain words behind a windows path", {"done"}),
        "control\x01\x1b[31mchars\u202egnp.txt": (b"plain words behind control characters", {"done"}),
        "x" * 3000 + ".md": (b"# A title\n\nplain words behind a very long name", {"done"}),
        "noextension": (b"plain words and no extension at all", {"done"}),
        "utf16.txt": ("plain words in UTF-16 with a BOM".encode("utf-16"), {"done"}),
    }


@pytest.fixture()
def stack(clean_db, redis_url, quick_artifact, tmp_path):
    pytest.importorskip("model.pipeline", reason="the inference pipeline (model/pipeline.py) is not there yet")
    redis.Redis.from_url(redis_url).flushall()
    with running_stack(clean_db, redis_url, quick_artifact, tmp_path) as running:
        yield running


def refused(api, token: str, files: list[tuple[str, bytes]]):
    response = api.post("/api/v1/documents", headers={"Authorization": f"Bearer {token}"},
                        data={"files": [(io.BytesIO(data), name) for name, data in files]},
                        content_type="multipart/form-data")
    assert response.status_code in (400, 413), (response.status_code, response.get_data(as_text=True)[:300])
    error = response.get_json()["error"]
    assert error["code"] and len(error["message"]) > 20
    return error


def test_hostile_uploads_end_in_a_clear_error_or_a_result(stack, api, owner, shared_data, clean_db):
    extract = stack.worker("extract", "extract,maintenance", wait=False)
    infer = stack.worker("infer", "infer", wait=False)
    stack.beat()
    stack.wait_ready(extract, infer)
    limit = api.application.config["MAX_CONTENT_LENGTH"]
    max_files = api.application.config["MAX_FILES_PER_UPLOAD"]
    started = time.monotonic()

    # refused at the door, each with a reason a person can act on; nothing of these is stored
    refusals = {
        "empty file": refused(api, owner[1], [("empty.txt", b"")])["code"],
        "unsupported type": refused(api, owner[1], [("photo.png", b"\x89PNG\r\n\x1a\n")])["code"],
        "just over the size limit": refused(api, owner[1], [("over.txt", b"a" * (limit + 1))])["code"],
        f"{max_files + 1} files": refused(api, owner[1], [(f"{i}.txt", b"x") for i in range(max_files + 1)])["code"],
        # past the form parser's part limit too: still named as too many files, not as too large
        "three times the limit": refused(api, owner[1], [(f"{i}.txt", b"x") for i in range(3 * max_files)])["code"],
        "one bad file among good ones": refused(api, owner[1], [("good.txt", b"fine"), ("bad.exe", b"MZ")])["code"],
    }
    assert refusals["just over the size limit"] == "payload_too_large"
    assert refusals[f"{max_files + 1} files"] == refusals["three times the limit"] == "too_many_files"
    with session_scope(clean_db) as session:
        assert session.scalar(select(Document.id).limit(1)) is None, "a refused upload stored something"

    # accepted: hostile files, every shared document, the largest file one request can carry, ordinary files
    hostile = hostile_files()
    shared = {p.name: p.read_bytes() for p in sorted((shared_data / "documents").iterdir()) if p.is_file()}
    ordinary = [(f"ordinary-{i}.txt", f"An ordinary note number {i} about the town library budget.".encode())
                for i in range(max_files)]
    _, hostile_ids = upload(stack, api, owner, [(name, data) for name, (data, _) in hostile.items()])
    _, shared_ids = upload(stack, api, owner, list(shared.items()))
    at_limit = (b"lorem ipsum dolor sit amet " * (limit // 27))[: limit - 4096]  # the request's own framing fits
    _, big_ids = upload(stack, api, owner, [("at-the-limit.txt", at_limit)])
    _, ordinary_ids = upload(stack, api, owner, ordinary[:100])
    ordinary_ids += upload(stack, api, owner, ordinary[100:])[1]
    ids = hostile_ids + shared_ids + big_ids + ordinary_ids
    wait_for(lambda: figures.finished(clean_db, ids) == len(ids), 300, "every accepted upload to finish", stack)
    wall = time.monotonic() - started

    with session_scope(clean_db) as session:
        docs = {d.id: d for d in session.scalars(select(Document).where(Document.id.in_(ids)))}
        summaries = dict(session.execute(select(Result.document_id, Result.summary)).all())
    outcome = {i: (d.error_code if d.state == DocState.FAILED.value else d.state) for i, d in docs.items()}
    for doc_id, (name, (_, expected)) in zip(hostile_ids, hostile.items(), strict=True):
        assert outcome[doc_id] in expected, (name[:60], outcome[doc_id], docs[doc_id].error_message)
        stored = docs[doc_id].filename
        assert "/" not in stored and "\\" not in stored and len(stored) <= 255, stored
    for doc_id, name in zip(shared_ids, shared, strict=True):
        assert outcome[doc_id] == UNREADABLE_SHARED.get(name, "done"), (name, docs[doc_id].error_message)
    assert outcome[big_ids[0]] == "done"
    assert all(outcome[i] == "done" and summaries[i].strip() for i in ordinary_ids), "ordinary documents suffered"
    assert all(len(d.error_message or "") > 20 for d in docs.values() if d.state == DocState.FAILED.value)

    result = figures.count(clean_db, "hostile-uploads", ids, wall, refused_at_upload=refusals,
                           accepted={"hostile": len(hostile_ids), "shared": len(shared_ids), "at_size_limit": 1,
                                     "ordinary": len(ordinary_ids)})
    result.write()
    assert not result.problems(), result
    for proc in (extract, infer):
        assert proc.alive(), f"{proc.name} died:\n{proc.log()}"
        assert not WORKER_DEATH.search(proc.log_path.read_text(errors="replace")), f"{proc.name} lost a child"
