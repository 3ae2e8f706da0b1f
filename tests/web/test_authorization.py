"""Every route, tried anonymously, as another user and as a non-admin: nothing leaks.

POLICY classifies every endpoint of the app; a new route that is not classified here fails
test_every_route_has_a_policy, so no route can escape these checks.
"""
from __future__ import annotations

import re

import pytest
from werkzeug.routing import Rule

from tests.web.conftest import Person, sign_in

# public: anyone; user: any signed-in user, nothing of another's inside; owner: the URL names something
# that belongs to someone (another user gets 404); admin: signed-in non-admins get 403
POLICY = {
    "static": "public", "health.healthz": "public", "health.readyz": "public", "api.meta.openapi": "public",
    "auth.login": "public",
    "auth.logout": "user", "auth.account": "user", "auth.create_token": "user", "pages.home": "user",
    "auth.end_other_sessions": "user",
    "pages.upload": "user", "pages.upload_files": "user", "pages.jobs": "user", "documents.history": "user",
    "documents.export": "user", "api.documents.upload": "user", "api.documents.index": "user",
    "api.jobs.index": "user", "api.training.list_models": "user",
    "auth.revoke_token": "owner", "pages.job": "owner", "documents.document": "owner",
    "documents.feedback": "owner", "documents.original": "owner", "api.documents.show": "owner",
    "api.documents.feedback": "owner", "api.jobs.show": "owner",
    "auth.users": "admin", "training.index": "admin", "training.start": "admin", "training.run": "admin",
    "training.run_chart": "admin", "training.cancel": "admin", "training.activate_version": "admin",
    "training.rollback": "admin", "api.training.start_run": "admin", "api.training.list_runs": "admin",
    "api.training.show_run": "admin", "api.training.cancel_run": "admin", "api.training.activate_model": "admin",
    "api.training.rollback_model": "admin",
}
BOB_SECRETS = ("bob-secret", "football notes")


def _rules(app) -> list[tuple[Rule, str]]:
    return [(rule, method) for rule in app.url_map.iter_rules()
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]


def _url(rule: Rule, world, bob_token_id: int) -> str:
    values = {"document_id": world.bob_docs[0], "job_id": world.bob_job, "run_id": world.run_id,
              "version_id": world.v1, "token_id": bob_token_id, "fmt": "csv", "filename": "app.css"}
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: str(values[m.group(1)]), rule.rule)


def _is_api(rule: Rule) -> bool:
    return rule.rule.startswith("/api/")


@pytest.fixture()
def bob_token_id(clean_db, bob: Person) -> int:
    from sqlalchemy import select

    from db.models import ApiToken
    from db.session import session_scope
    with session_scope(clean_db) as session:
        return session.scalar(select(ApiToken.id).where(ApiToken.user_id == bob.id))


def test_every_route_has_a_policy(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints == set(POLICY), (
        f"classify the new routes in POLICY: {sorted(endpoints - set(POLICY))}; "
        f"stale entries: {sorted(set(POLICY) - endpoints)}")


def test_anonymous_gets_nothing_but_public_routes(app, client, world, bob_token_id):
    for rule, method in _rules(app):
        if POLICY[rule.endpoint] == "public":
            continue
        response = client.open(_url(rule, world, bob_token_id), method=method)
        body = response.get_data(as_text=True)
        if _is_api(rule):
            assert response.status_code == 401, (rule.rule, method, response.status_code)
            assert response.get_json()["error"]["code"] == "unauthorized"
        else:
            assert response.status_code in (302, 401), (rule.rule, method, response.status_code)
            if response.status_code == 302:
                assert "/login" in response.headers["Location"]
        assert not any(secret in body for secret in BOB_SECRETS), rule.rule


@pytest.mark.parametrize("via", ["session", "token"])
def test_another_user_gets_404_and_a_non_admin_403(app, client, world, alice, bob, bob_token_id, via):
    headers = alice.bearer if via == "token" else {}
    if via == "session":
        headers = {"X-CSRFToken": sign_in(client, alice)}
    for rule, method in _rules(app):
        policy = POLICY[rule.endpoint]
        if policy in ("public", "user"):
            continue
        url = _url(rule, world, bob_token_id)
        response = client.open(url, method=method, headers=headers, json={} if method == "POST" else None)
        body = response.get_data(as_text=True)
        expected = 404 if policy == "owner" else 403
        assert response.status_code == expected, (url, method, response.status_code, body[:300])
        assert not any(secret in body for secret in BOB_SECRETS), url
        assert "Traceback" not in body
    # nothing changed hands: Bob's token still works and his document has no feedback
    assert client.get(f"/api/v1/documents/{world.bob_docs[0]}", headers=bob.bearer).status_code == 200


def test_lists_and_exports_show_only_your_own(client, world, alice):
    for url in ("/api/v1/documents", "/api/v1/jobs", "/api/v1/documents?q=football"):
        body = client.get(url, headers=alice.bearer).get_data(as_text=True)
        assert not any(secret in body for secret in BOB_SECRETS), url
    sign_in(client, alice)
    for url in ("/documents", "/jobs", "/upload", "/documents/export.csv", "/documents/export.json",
                "/documents?q=football", "/account"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert not any(secret in response.get_data(as_text=True) for secret in BOB_SECRETS), url


def test_admin_can_use_admin_routes(client, world, admin):
    assert client.get("/api/v1/training-runs", headers=admin.bearer).status_code == 200
    assert client.get(f"/api/v1/training-runs/{world.run_id}", headers=admin.bearer).status_code == 200
    sign_in(client, admin)
    for url in ("/training", f"/training/runs/{world.run_id}", f"/training/runs/{world.run_id}/chart",
                "/admin/users"):
        assert client.get(url).status_code == 200, url


def test_a_missing_document_says_where_yours_are_in_the_callers_terms(client, world, alice, bob):
    """A page names the page (History, Jobs); an API client also gets the endpoint."""
    theirs = world.bob_docs[0]
    sign_in(client, alice)
    page = client.get(f"/documents/{theirs}").get_data(as_text=True)
    assert "documents are listed under History." in page and "GET /api" not in page
    api = client.get(f"/api/v1/documents/{theirs}", headers=alice.bearer).get_json()["error"]["message"]
    assert api.endswith("documents are listed under History (GET /api/v1/documents).")


def test_a_conflict_page_says_what_kind_of_refusal_it_is(app):
    from webapp.errors import error_response

    with app.test_request_context("/training"):
        response = error_response(409, "Training run 3 is still queued or running.")
    body = response.get_data(as_text=True)
    assert response.status_code == 409 and "Not possible right now" in body
    assert "could not be understood" not in body
