"""The JSON API against its contract (docs/contracts.md, issue 3) and its OpenAPI document."""
from __future__ import annotations

import base64
import io
import json
import re

import pytest
import redis
from sqlalchemy import func, select

from db.models import Feedback, TrainingRun
from db.session import session_scope
from leximind.queues import QUEUE_EXTRACT, QUEUE_TRAIN
from tests.web.conftest import sign_in


def files(*pairs: tuple[str, bytes]) -> dict:
    return {"files": [(io.BytesIO(data), name) for name, data in pairs]}


def test_upload_answers_202_with_the_job_and_wakes_extraction(client, alice, redis_url):
    response = client.post("/api/v1/documents", headers=alice.bearer, content_type="multipart/form-data",
                           data=files(("a.txt", b"first document"), ("b.md", b"# second")))
    assert response.status_code == 202
    body = response.get_json()
    assert response.headers["Location"] == f"/api/v1/jobs/{body['job_id']}"
    assert [(d["filename"], d["state"]) for d in body["documents"]] == [("a.txt", "uploaded"), ("b.md", "uploaded")]
    assert all(isinstance(d["id"], int) for d in body["documents"])
    # one extract wake-up per document, by task name, on the extract queue
    assert redis.Redis.from_url(redis_url).llen(QUEUE_EXTRACT) == 2

    job = client.get(response.headers["Location"], headers=alice.bearer).get_json()
    assert job["id"] == body["job_id"] and job["state"] == "queued"
    assert job["progress"] == {"total": 2, "done": 0, "failed": 0, "in_progress": 2}
    assert [set(d) >= {"id", "state", "error"} for d in job["documents"]] == [True, True]


def test_upload_refuses_the_whole_upload_naming_each_bad_file(client, alice):
    response = client.post("/api/v1/documents", headers=alice.bearer, content_type="multipart/form-data",
                           data=files(("ok.txt", b"fine"), ("photo.png", b"\x89PNG"), ("empty.txt", b"")))
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "rejected_files"
    assert {f["filename"] for f in error["details"]["files"]} == {"photo.png", "empty.txt"}
    assert "Remove or replace them" in error["message"]
    assert client.get("/api/v1/jobs", headers=alice.bearer).get_json()["jobs"] == []


def test_upload_without_files_or_with_too_many(app_factory, alice):
    client = app_factory(MAX_FILES_PER_UPLOAD=2).test_client()
    response = client.post("/api/v1/documents", headers=alice.bearer, data={})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "no_files"
    response = client.post("/api/v1/documents", headers=alice.bearer, content_type="multipart/form-data",
                           data=files(("1.txt", b"1"), ("2.txt", b"2"), ("3.txt", b"3")))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "too_many_files"
    assert "the limit is 2" in response.get_json()["error"]["message"]


def test_one_file_limit_for_the_page_and_the_api(app_factory, alice, monkeypatch):
    """LEXIMIND_MAX_FILES is honoured as set by both the upload page and the API (no hidden cap of 200)."""
    monkeypatch.setenv("LEXIMIND_MAX_FILES", "300")
    app = app_factory()
    assert app.config["MAX_FILES_PER_UPLOAD"] == 300 and app.config["MAX_FORM_PARTS"] > 300
    client = app.test_client()
    token = sign_in(client, alice)
    page = client.get("/upload").get_data(as_text=True)
    assert 'data-max-files="300"' in page and "up to 300 per upload" in page
    many = [(f"{n}.txt", b"words") for n in range(250)]
    web = client.post("/upload", data={**files(*many), "csrf_token": token},
                      headers={"Accept": "application/json"}, content_type="multipart/form-data")
    assert web.status_code == 201, web.get_data(as_text=True)[:300]
    api = client.post("/api/v1/documents", headers=alice.bearer, content_type="multipart/form-data",
                      data=files(*many))
    assert api.status_code == 202, api.get_data(as_text=True)[:300]
    too_many = client.post("/api/v1/documents", headers=alice.bearer, content_type="multipart/form-data",
                           data=files(*[(f"{n}.txt", b"words") for n in range(301)]))
    assert too_many.status_code == 400 and "the limit is 300" in too_many.get_json()["error"]["message"]
    monkeypatch.setenv("LEXIMIND_MAX_FILES", "5000")
    assert app_factory().config["MAX_FORM_PARTS"] > 5000  # Werkzeug must not refuse before our check


def test_job_reports_failures_in_plain_words(client, world, alice):
    job = client.get(f"/api/v1/jobs/{world.alice_job}", headers=alice.bearer).get_json()
    assert job["progress"]["total"] == 3 and job["progress"]["done"] == 1 and job["progress"]["failed"] == 1
    failed = [d for d in job["documents"] if d["state"] == "failed"]
    assert failed[0]["error"] == {"code": "corrupt_file",
                                  "message": "The PDF is damaged and cannot be read. Save it again."}
    assert job["state"] == "processing"
    assert job["queue_position"] == 0


def test_document_carries_its_latest_result_and_older_ones(client, world, alice):
    doc = client.get(f"/api/v1/documents/{world.alice_docs[0]}", headers=alice.bearer).get_json()
    result = doc["result"]
    assert result["model_version"] == "v2"
    assert result["topic"]["label"] == "Business" and result["topic"]["score"] == 0.7
    assert set(result["topic"]["scores"]) == {"World", "Sports", "Business", "Sci/Tech"}
    assert [e["label"] for e in result["emotions"]] == ["joy", "surprise"]
    assert all(set(e) >= {"label", "score"} for e in result["emotions"])
    assert result["summary"]
    assert [r["model_version"] for r in doc["earlier_results"]] == ["v1"]
    assert "text" not in doc
    assert client.get(f"/api/v1/documents/{world.alice_docs[0]}?text=1",
                      headers=alice.bearer).get_json()["text"].startswith("Stocks")
    assert "text" not in client.get(f"/api/v1/documents/{world.alice_docs[0]}?text=0", headers=alice.bearer).get_json()
    unread = client.get(f"/api/v1/documents/{world.alice_docs[0]}?text=true", headers=alice.bearer)
    assert unread.status_code == 400 and unread.get_json()["error"] == {
        "code": "invalid_parameter", "message": "text must be 1 (include the extracted text) or 0, not 'true'."}


def test_list_documents_filters_and_pages(client, world, alice):
    body = client.get("/api/v1/documents?topic=Business", headers=alice.bearer).get_json()
    assert [d["id"] for d in body["documents"]] == [world.alice_docs[0]]
    body = client.get("/api/v1/documents?limit=2", headers=alice.bearer).get_json()
    assert len(body["documents"]) == 2 and body["total"] == 3 and body["next_cursor"]
    rest = client.get(f"/api/v1/documents?limit=2&after={body['next_cursor']}", headers=alice.bearer).get_json()
    assert len(rest["documents"]) == 1 and rest["next_cursor"] is None
    widest = client.get("/api/v1/documents?from=0001-01-01&to=9999-12-31", headers=alice.bearer)
    assert widest.status_code == 200 and widest.get_json()["total"] == 3
    bad = client.get("/api/v1/documents?from=yesterday", headers=alice.bearer)
    assert bad.status_code == 400 and "2025-01-31" in bad.get_json()["error"]["message"]
    assert client.get("/api/v1/documents?limit=0", headers=alice.bearer).status_code == 400


@pytest.mark.parametrize("parts", [["name", 5, 1], ["name", {"a": 1}, 1], ["name", None, 1], ["name", "a", "1"],
                                   ["newest", 5, 1]])
def test_a_forged_cursor_is_a_400_not_a_500(client, world, alice, parts):
    cursor = base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")
    response = client.get(f"/api/v1/documents?sort={parts[0]}&after={cursor}", headers=alice.bearer)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("other", ["oldest", "name", "name_desc"])
def test_a_cursor_is_refused_in_another_order_not_read_as_if_it_fit(client, world, alice, other):
    page = client.get("/api/v1/documents?limit=1&sort=newest", headers=alice.bearer).get_json()
    response = client.get(f"/api/v1/documents?limit=1&sort={other}&after={page['next_cursor']}", headers=alice.bearer)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == {"code": "invalid_cursor", "message": (
        f"That page link belongs to the 'newest' order, not '{other}'; go back to the first page of this order.")}


def test_feedback_is_stored_and_checked(client, world, alice, clean_db):
    url = f"/api/v1/documents/{world.alice_docs[0]}/feedback"
    response = client.post(url, headers=alice.bearer, json={"topic": "World", "emotions": ["joy"]})
    assert response.status_code == 201
    assert response.get_json()["topic"] == "World"
    bad = client.post(url, headers=alice.bearer, json={"topic": "Cooking"})
    assert bad.status_code == 400 and bad.get_json()["error"]["message"] == (
        "'Cooking' is not a topic this model knows; pick one from the list: Business, Sci/Tech, Sports, World.")
    bad = client.post(url, headers=alice.bearer, json={"emotions": ["joy", "glee"]})
    assert bad.status_code == 400 and bad.get_json()["error"]["message"] == (
        "Unknown emotions glee; pick from the list: anger, fear, joy, neutral, sadness, surprise.")
    empty = client.post(url, headers=alice.bearer, json={})
    assert empty.status_code == 400 and "Nothing to save" in empty.get_json()["error"]["message"]
    not_json = client.post(url, headers=alice.bearer, data="topic=World")
    assert not_json.status_code == 400 and not_json.get_json()["error"]["code"] == "invalid_json"
    waiting = client.post(f"/api/v1/documents/{world.alice_docs[2]}/feedback", headers=alice.bearer,
                          json={"topic": "World"})
    assert waiting.status_code == 400 and "no result yet" in waiting.get_json()["error"]["message"]
    failed = client.post(f"/api/v1/documents/{world.alice_docs[1]}/feedback", headers=alice.bearer,
                         json={"topic": "World"})
    assert failed.status_code == 400 and failed.get_json()["error"]["message"] == (
        "This document could not be processed, so it has no result to correct; upload a fixed file to get one. "
        "Why it failed: The PDF is damaged and cannot be read. Save it again.")
    with session_scope(clean_db) as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 1


@pytest.mark.parametrize("body", [{"emotion": ["joy"]}, {"topic": "World", "topic_label": "World"}])
def test_feedback_names_an_unknown_field_instead_of_dropping_it(client, world, alice, clean_db, body):
    response = client.post(f"/api/v1/documents/{world.alice_docs[0]}/feedback", headers=alice.bearer, json=body)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_feedback" and error["message"].startswith(
        f"Unknown field(s): {list(body)[-1]}. A correction takes topic, emotions, summary.")
    with session_scope(clean_db) as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 0


def test_feedback_summary_has_the_correction_forms_length_limit(client, world, alice, clean_db):
    url = f"/api/v1/documents/{world.alice_docs[0]}/feedback"
    too_long = client.post(url, headers=alice.bearer, json={"summary": "word " * 2000})
    assert too_long.status_code == 400 and too_long.get_json()["error"]["message"] == (
        "The summary is 9,999 characters; a summary is at most 5,000. Shorten it.")
    assert client.post(url, headers=alice.bearer, json={"summary": "w" * 5000}).status_code == 201
    with session_scope(clean_db) as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 1


def test_json_nested_too_deep_is_a_400_not_a_500(client, world, alice, admin):
    deep = "[" * 100_000 + "]" * 100_000
    for path, person in [(f"/api/v1/documents/{world.alice_docs[0]}/feedback", alice),
                         ("/api/v1/training-runs", admin)]:
        response = client.post(path, headers=person.bearer, data=deep, content_type="application/json")
        assert response.status_code == 400, (path, response.get_json())
        assert response.get_json()["error"]["code"] == "invalid_json"


def test_jobs_list_pages_by_id(client, world, alice):
    body = client.get("/api/v1/jobs", headers=alice.bearer).get_json()
    assert [j["id"] for j in body["jobs"]] == [world.alice_job]
    assert body["jobs"][0]["progress"] == {"total": 3, "done": 1, "failed": 1}
    older = client.get(f"/api/v1/jobs?before={world.alice_job}", headers=alice.bearer).get_json()
    assert older["jobs"] == [] and older["next_before"] is None


@pytest.mark.parametrize("query, code, words", [
    ("before=abc", "invalid_cursor", "before must be a whole number from 1 to 2147483647, not 'abc'"),
    ("before=0", "invalid_cursor", "before must be a whole number"),
    ("before=428385034634700", "invalid_cursor", "from 1 to 2147483647, not '428385034634700'"),
    ("limit=abc", "invalid_limit", "limit must be a whole number from 1 to 200"),
    ("limit=201", "invalid_limit", "limit must be a whole number from 1 to 200"),
])
def test_jobs_list_refuses_bad_parameters_like_documents(client, world, alice, query, code, words):
    """As /documents does: a parameter that cannot be read is a 400 naming it, never silently ignored."""
    response = client.get(f"/api/v1/jobs?{query}", headers=alice.bearer)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code and words in error["message"]


def test_training_runs_start_list_show_cancel(client, world, admin, redis_url, clean_db):
    response = client.post("/api/v1/training-runs", headers=admin.bearer,
                           json={"datasets": ["ag_news"], "tasks": ["topic"], "epochs": 2, "method": "lora"})
    assert response.status_code == 202, response.get_json()
    run = response.get_json()
    assert response.headers["Location"] == f"/api/v1/training-runs/{run['id']}"
    assert run["state"] == "queued"
    # in the training job's terms (model/training/run.py spec_from_params)
    assert run["params"] == {"recipe": "finetune", "datasets": ["ag_news"], "include_feedback": True, "epochs": 2,
                             "train": {"tasks": ["topic"], "learning_rate": 3e-4, "mode": "lora"}}
    assert redis.Redis.from_url(redis_url).llen(QUEUE_TRAIN) == 1
    busy = client.post("/api/v1/training-runs", headers=admin.bearer, json={})
    assert busy.status_code == 409 and f"run {run['id']}" in busy.get_json()["error"]["message"]
    runs = client.get("/api/v1/training-runs", headers=admin.bearer).get_json()["training_runs"]
    assert [r["id"] for r in runs] == [run["id"], world.run_id] and "history" not in runs[0]
    shown = client.get(f"/api/v1/training-runs/{world.run_id}", headers=admin.bearer).get_json()
    assert shown["history"][0] == {"step": 0, "loss": 2.0}
    cancelled = client.post(f"/api/v1/training-runs/{run['id']}/cancel", headers=admin.bearer)
    assert cancelled.status_code == 202 and cancelled.get_json()["state"] == "cancelled"
    again = client.post(f"/api/v1/training-runs/{run['id']}/cancel", headers=admin.bearer)
    assert again.status_code == 409
    with session_scope(clean_db) as session:
        assert session.get(TrainingRun, run["id"]).created_by_id == admin.id


def test_training_request_is_validated(client, admin):
    for body, words in [({"datasets": ["imdb"]}, "Unknown datasets: imdb"), ({"epochs": 0}, "between 1 and 50"),
                        ({"method": "qlora"}, "method must be one of"), ({"learning_rate": 5}, "learning_rate must")]:
        response = client.post("/api/v1/training-runs", headers=admin.bearer, json=body)
        assert response.status_code == 400 and words in response.get_json()["error"]["message"], body


@pytest.mark.parametrize(("body", "words"), [
    ('{"epochs": "3"}', "epochs must be a whole number, not \"3\""),
    ('{"epochs": 1.5}', "epochs must be a whole number, not 1.5"),
    ('{"epochs": true}', "epochs must be a whole number, not true"),
    ('{"epochs": 1e400}', "epochs must be a whole number, not Infinity"),
    ('{"learning_rate": "0.001"}', "learning_rate must be a number"),
    ('{"train": {"learning_rate": false}}', "train.learning_rate must be a number"),
    ('{"datasets": [["bbc"]]}', "datasets must be a list of dataset names"),
    ('{"tasks": [{}]}', "tasks must be a list of task names"),
    ('{"include_feedback": "yes"}', "include_feedback must be true or false"),
])
def test_training_request_fields_must_have_their_json_types(client, admin, body, words):
    response = client.post("/api/v1/training-runs", headers=admin.bearer, data=body, content_type="application/json")
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_training_request" and words in error["message"]


def test_only_a_started_run_counts_against_the_training_rate_limit(app_factory, admin):
    client = app_factory(TRAINING_RATE_LIMIT="2 per hour").test_client()

    def start(body):
        return client.post("/api/v1/training-runs", headers=admin.bearer, json=body).status_code

    assert [start({"epochs": 0}) for _ in range(3)] == [400, 400, 400]
    assert start({"tasks": ["topic"], "datasets": ["ag_news"]}) == 202
    assert start({}) == 409  # one run at a time: refused, not counted
    run_id = client.get("/api/v1/training-runs", headers=admin.bearer).get_json()["training_runs"][0]["id"]
    assert client.post(f"/api/v1/training-runs/{run_id}/cancel", headers=admin.bearer).status_code == 202
    assert start({"tasks": ["topic"], "datasets": ["ag_news"]}) == 202
    assert start({}) == 429


def test_models_list_activate_and_roll_back(client, world, admin, alice):
    body = client.get("/api/v1/models", headers=alice.bearer).get_json()
    assert [(m["name"], m["is_active"]) for m in body["models"]] == [("v2", True), ("v1", False)]
    assert body["status"]["state"] == "ready" and "path" not in body["models"][0]
    activated = client.post(f"/api/v1/models/{world.v1}/activate", headers=admin.bearer)
    assert activated.status_code == 200 and activated.get_json()["is_active"] is True
    rolled = client.post("/api/v1/models/rollback", headers=admin.bearer)
    assert rolled.status_code == 200 and rolled.get_json()["name"] == "v2"
    assert client.post("/api/v1/models/999/activate", headers=admin.bearer).status_code == 404


def test_openapi_describes_every_api_route(app, client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule[len("/api/v1"):])
            served |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == served
    refs = re.findall(r'"\$ref": "#/components/(\w+)/(\w+)"', str(spec).replace("'", '"'))
    for section, name in refs:
        assert name in spec["components"][section], name
