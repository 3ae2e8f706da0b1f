"""The whole job system with real worker processes: every shared document, a SIGKILL, a Redis FLUSHALL."""

from __future__ import annotations

import pytest
import redis
from sqlalchemy import select

from db.models import DocState, Document, Result
from db.session import session_scope
from tests.e2e.conftest import all_finished, upload, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# the files in shared/data/documents that cannot be read, and the reason each must give
UNREADABLE = {
    "huckleberry_finn_p22_scanned_image_only.pdf": "no_text_layer",
    "invalid_header_and_eof_only.pdf": "corrupt_file",
    "password_protected_openpassword.pdf": "password_protected",
}
SENTENCE = (
    "The committee reviewed the quarterly budget and agreed to fund the new library wing, "
    "while residents asked for longer opening hours. "
)


def small_documents(n: int, tag: str) -> list[tuple[str, bytes]]:
    return [(f"{tag}-{i}.txt", (f"{tag} note {i}. " + SENTENCE * (1 + i % 4)).encode()) for i in range(n)]


def final_documents(database_url: str, ids: list[int]) -> dict[int, Document]:
    with session_scope(database_url) as session:
        return {d.id: d for d in session.scalars(select(Document).where(Document.id.in_(ids)))}


def assert_each_done_once(stack, ids: list[int]) -> None:
    counts = stack.counts()
    assert counts == {DocState.DONE.value: len(ids)}, counts
    assert stack.results_per_document() == dict.fromkeys(ids, 1)  # no document lost, none written twice


def test_every_shared_document_is_done_or_failed_with_a_reason(stack, api, owner, shared_data):
    files = [(p.name, p.read_bytes()) for p in sorted((shared_data / "documents").iterdir()) if p.is_file()]
    extract = stack.worker("extract", "extract,maintenance", concurrency=2, wait=False)
    infer = stack.worker("infer", "infer", wait=False)
    stack.beat()
    stack.wait_ready(extract, infer)
    job_id, ids = upload(stack, api, owner, files)
    wait_for(all_finished(stack, len(ids)), 180, "every shared document to finish", stack)

    docs = final_documents(stack.database_url, ids)
    with session_scope(stack.database_url) as session:
        summaries = dict(session.execute(select(Result.document_id, Result.summary)).all())
    for doc in docs.values():
        if doc.filename in UNREADABLE:
            assert (doc.state, doc.error_code) == (DocState.FAILED.value, UNREADABLE[doc.filename]), (
                doc.filename
            )
            assert len(doc.error_message) > 20
        else:
            assert doc.state == DocState.DONE.value, (doc.filename, doc.error_code, doc.error_message)
            assert summaries[doc.id].strip(), f"{doc.filename}: empty summary"
    assert stack.results_per_document() == {i: 1 for i, d in docs.items() if d.state == DocState.DONE.value}

    if api is not None:
        bearer = {"Authorization": f"Bearer {owner[1]}"}
        job = api.get(f"/api/v1/jobs/{job_id}", headers=bearer).get_json()
        progress = {k: job["progress"][k] for k in ("total", "done", "failed")}
        assert progress == {
            "total": len(files),
            "done": len(files) - len(UNREADABLE),
            "failed": len(UNREADABLE),
        }
        assert {d["state"] for d in job["documents"]} == {DocState.DONE.value, DocState.FAILED.value}
        done_id = next(i for i, d in docs.items() if d.state == DocState.DONE.value)
        shown = api.get(f"/api/v1/documents/{done_id}", headers=bearer).get_json()
        assert shown["result"]["summary"] and shown["result"]["topic"]["label"]


def test_sigkill_of_the_inference_worker_mid_batch_loses_nothing(stack, api, owner):
    extract = stack.worker("extract", "extract,maintenance", concurrency=1, wait=False)
    stack.beat()
    stack.wait_ready(extract)
    _, ids = upload(stack, api, owner, small_documents(240, "kill"))
    wait_for(lambda: stack.counts().get(DocState.QUEUED.value, 0) == len(ids), 120, "extraction", stack)

    first = stack.worker("infer-a", "infer", LEXIMIND_CLAIM_BATCH="32", LEXIMIND_INFER_BATCH="8")
    wait_for(
        lambda: stack.counts().get(DocState.DONE.value, 0) > 0, 60, "the first results", stack, interval=0.02
    )
    first.kill()  # SIGKILL to the worker and its pool child, mid-claim
    first.popen.wait(10)
    held = {
        d.id: d.attempts
        for d in final_documents(stack.database_url, ids).values()
        if d.state == DocState.PROCESSING.value
    }
    assert held, f"the kill missed the claim: {stack.counts()}"

    stack.worker("infer-b", "infer")
    wait_for(all_finished(stack, len(ids)), 150, "every document after the kill", stack)
    assert_each_done_once(stack, ids)
    final = final_documents(stack.database_url, ids)
    # the batch that was running when the worker died was charged and ran again; the documents merely
    # claimed behind it went back uncharged and ran once
    assert all(final[i].attempts == 2 for i, attempts in held.items() if attempts == 1), held
    assert all(final[i].attempts == 1 for i, attempts in held.items() if attempts == 0), held


def test_flushall_mid_run_loses_nothing(stack, api, owner, redis_url):
    extract = stack.worker("extract", "extract,maintenance", concurrency=1, wait=False)
    infer = stack.worker("infer", "infer", wait=False, LEXIMIND_CLAIM_BATCH="16", LEXIMIND_INFER_BATCH="8")
    stack.beat()
    stack.wait_ready(extract, infer)
    _, ids = upload(stack, api, owner, small_documents(200, "flush"))
    wait_for(
        lambda: stack.counts().get(DocState.DONE.value, 0) > 0, 60, "the first results", stack, interval=0.02
    )
    redis.Redis.from_url(redis_url).flushall()  # every pending extract and infer message is gone
    at_flush = stack.counts()
    assert at_flush.get(DocState.DONE.value, 0) < len(ids), f"nothing left to lose: {at_flush}"
    wait_for(all_finished(stack, len(ids)), 150, "every document after FLUSHALL", stack)
    assert_each_done_once(stack, ids)
