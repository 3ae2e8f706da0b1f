"""What people see about the model when the active version does not load (see db.versions.model_status)."""
from __future__ import annotations

import html

from db.session import session_scope
from db.versions import activate_version, record_load_failure, register_version
from tests.web.conftest import csrf_from, sign_in


def _versions(database_url: str, *, broken_only: bool = False) -> None:
    with session_scope(database_url) as session:
        if not broken_only:
            good = register_version(session, path="/models/v1", source="import", name="v1")
            activate_version(session, good.id)
        broken = register_version(session, path="/models/v2", source="trained", name="v2")
        activate_version(session, broken.id)
        record_load_failure(session, broken.id, "ArtifactError: weights.safetensors sha256 mismatch")


def test_a_version_that_does_not_load_shows_which_one_serves(client, alice, clean_db):
    _versions(clean_db)
    sign_in(client, alice)
    page = html.unescape(client.get("/upload").get_data(as_text=True))
    assert "Model v1 (v2 does not load)" in page
    assert 'id="model-banner"' in page and "sha256 mismatch" in page and "previous good version" in page

    status = client.get("/api/v1/models", headers=alice.bearer).get_json()["status"]
    assert status["state"] == "degraded"
    assert (status["version"], status["serving_version"]) == ("v2", "v1")
    assert "sha256 mismatch" in status["load_error"]

    ready = client.get("/readyz").get_json()
    assert ready["model"]["state"] == "degraded" and ready["model"]["serving_version"] == "v1"


def test_with_no_version_to_stand_in_the_page_says_it_failed(client, alice, clean_db):
    _versions(clean_db, broken_only=True)
    sign_in(client, alice)
    page = html.unescape(client.get("/upload").get_data(as_text=True))
    assert "Model v2 does not load" in page and "No model yet" not in page
    assert "banner-error" in page and "nothing is lost" in page


def test_people_see_their_own_waiting_documents_and_admins_everyones(client, alice, bob, admin, clean_db):
    from sqlalchemy import update

    from db.models import Document
    from db.uploads import UploadedFile, create_job

    _versions(clean_db, broken_only=True)
    with session_scope(clean_db) as session:
        for person, count in ((alice, 2), (bob, 3)):
            _, docs = create_job(session, person.id, [UploadedFile(f"{i}.txt", b"text") for i in range(count)])
            session.execute(update(Document).where(Document.id.in_([d.id for d in docs])).values(state="queued"))
    seen = {
        person.email: client.get("/api/v1/models", headers=person.bearer).get_json()["status"]
        for person in (alice, bob, admin)
    }
    assert [seen[p.email]["waiting_documents"] for p in (alice, bob, admin)] == [2, 3, 5]
    assert "2 of your documents wait" in seen[alice.email]["message"]
    sign_in(client, alice)
    page = html.unescape(client.get("/upload").get_data(as_text=True))
    assert "2 of your documents wait" in page and "5 documents" not in page

    # /readyz is public: anonymous callers get the model's state, not the queue nor the load error
    client.post("/logout", data={"csrf_token": csrf_from(page)})
    anonymous = client.get("/readyz").get_json()["model"]
    assert anonymous == {"state": "failed", "version": "v2", "serving_version": None, "training_run_id": None,
                         "progress_pct": None}
    ready = {person.email: client.get("/readyz", headers=person.bearer).get_json()["model"]
             for person in (alice, admin)}
    assert [ready[p.email]["waiting_documents"] for p in (alice, admin)] == [2, 5]


def test_waiting_counts_read_as_english():
    from db.versions import _WaitingWords

    assert [str(_WaitingWords(n, own)) for n, own in ((1, False), (3, False), (1, True), (2, True))] == [
        "1 document waits", "3 documents wait", "1 of your documents waits", "2 of your documents wait"]
