"""CSRF, size and rate limits, token revocation, error pages without tracebacks, headers, health."""
from __future__ import annotations

import io
import time

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from tests.web.conftest import PASSWORD, csrf_from, sign_in


def test_forms_need_their_csrf_token(client, world, alice):
    anonymous = client.post("/login", data={"email": alice.email, "password": PASSWORD})
    assert anonymous.status_code == 400 and "Reload the page" in anonymous.get_data(as_text=True)
    token = sign_in(client, alice)
    url = f"/documents/{world.alice_docs[0]}/feedback"
    refused = client.post(url, data={"topic": "World"})
    assert refused.status_code == 400
    assert "The form expired or came from another site" in refused.get_data(as_text=True)
    assert client.post(url, data={"topic": "World", "csrf_token": token}).status_code == 303
    # the API with a session cookie is a browser too: it needs the token (as a header)
    api_url = f"/api/v1/documents/{world.alice_docs[0]}/feedback"
    refused = client.post(api_url, json={"topic": "World"})
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "csrf_failed"
    assert client.post(api_url, json={"topic": "World"}, headers={"X-CSRFToken": token}).status_code == 201


def test_bearer_requests_are_exempt_from_csrf(client, world, alice):
    response = client.post(f"/api/v1/documents/{world.alice_docs[0]}/feedback", json={"topic": "World"},
                           headers=alice.bearer)
    assert response.status_code == 201


def test_oversized_upload_is_413_with_a_clear_message(app_factory, alice):
    client = app_factory(MAX_CONTENT_LENGTH=10_000).test_client()
    big = {"files": [(io.BytesIO(b"x" * 20_000), "big.txt")]}
    response = client.post("/api/v1/documents", headers=alice.bearer, data=big, content_type="multipart/form-data")
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "payload_too_large" and "0 MB limit" in error["message"]
    token = sign_in(client, alice)
    page = client.post("/upload", data={"csrf_token": token, **{"files": [(io.BytesIO(b"x" * 20_000), "big.txt")]}},
                       content_type="multipart/form-data")
    assert page.status_code == 413
    assert "Upload too large" in page.get_data(as_text=True)


def test_sign_in_is_rate_limited(app_factory, alice):
    client = app_factory(LOGIN_RATE_LIMIT="3 per minute").test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    codes = [client.post("/login", data={"email": alice.email, "password": "wrong", "csrf_token": token}).status_code
             for _ in range(4)]
    assert codes == [400, 400, 400, 429]
    response = client.post("/login", data={"email": alice.email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 429
    assert "Too many requests" in response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) > 0


def test_upload_and_training_are_rate_limited(app_factory, alice, admin):
    client = app_factory(UPLOAD_RATE_LIMIT="2 per minute", TRAINING_RATE_LIMIT="1 per minute").test_client()
    codes = [client.post("/api/v1/documents", headers=alice.bearer, content_type="multipart/form-data",
                         data={"files": [(io.BytesIO(f"doc {i}".encode()), f"{i}.txt")]}).status_code
             for i in range(3)]
    assert codes == [202, 202, 429]
    error = client.post("/api/v1/documents", headers=alice.bearer, data={}).get_json()["error"]
    assert error["code"] == "rate_limited" and "2 per 1 minute" in error["message"]
    assert client.post("/api/v1/training-runs", headers=admin.bearer, json={}).status_code == 202
    assert client.post("/api/v1/training-runs", headers=admin.bearer, json={}).status_code == 429


def test_revoked_tokens_stop_working_at_once(client, alice):
    assert client.get("/api/v1/jobs", headers=alice.bearer).status_code == 200
    token = sign_in(client, alice)
    page = client.get("/account").get_data(as_text=True)
    token_id = int(page.split('/account/tokens/')[1].split('/revoke')[0])
    assert client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": token}).status_code == 302
    # even with a signed-in session riding along, a bearer request is judged by its token alone
    response = client.get("/api/v1/jobs", headers=alice.bearer)
    assert response.status_code == 401
    error = response.get_json()["error"]
    assert error["code"] == "invalid_token" and "revoked" in error["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/jobs", headers={"Authorization": "Bearer"}).status_code == 401


def test_new_tokens_are_shown_once_and_stored_hashed(client, alice, clean_db):
    from sqlalchemy import select

    from db.models import ApiToken
    from db.session import session_scope
    token = sign_in(client, alice)
    page = client.post("/account/tokens", data={"name": "script", "csrf_token": token}).get_data(as_text=True)
    secret = page.split('id="new-token">')[1].split("<")[0]
    assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    with session_scope(clean_db) as session:
        stored = session.scalars(select(ApiToken.token_hash)).all()
    assert secret not in stored and all(len(h) == 64 for h in stored)
    assert secret not in client.get("/account").get_data(as_text=True)


@pytest.fixture()
def crashing_app(app_factory):
    app = app_factory(TESTING=False, PROPAGATE_EXCEPTIONS=False)

    def boom():
        raise ZeroDivisionError("secret internals: password=hunter2")

    app.add_url_rule("/boom", view_func=boom)
    app.add_url_rule("/api/v1/boom", endpoint="api_boom", view_func=boom)
    return app


def test_errors_never_show_a_traceback(crashing_app, alice):
    client = crashing_app.test_client()
    sign_in(client, alice)
    for url, status in [("/boom", 500), ("/api/v1/boom", 500), ("/nowhere", 404), ("/api/v1/nowhere", 404),
                        ("/api/v1/documents/1", 404), ("/healthz", 200)]:
        response = client.get(url)
        body = response.get_data(as_text=True)
        assert response.status_code == status, url
        assert "Traceback" not in body and "hunter2" not in body and "ZeroDivisionError" not in body
    assert client.get("/api/v1/boom").get_json()["error"] == {
        "code": "internal_error",
        "message": "The error was logged. Try again in a moment; if it keeps happening, tell an administrator."}
    assert "Something went wrong on our side" in client.get("/boom").get_data(as_text=True)
    wrong_method = client.delete("/api/v1/jobs")
    assert wrong_method.status_code == 405 and "openapi.json" in wrong_method.get_json()["error"]["message"]
    assert "GET" in wrong_method.headers["Allow"]
    bad_filter = client.get("/documents?to=tomorrow")
    assert bad_filter.status_code == 400 and "must be a date like" in bad_filter.get_data(as_text=True)


def test_security_headers_and_cookie_flags(app_factory, alice):
    client = app_factory(SESSION_COOKIE_SECURE=True).test_client()
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"
    assert "<script>" not in response.get_data(as_text=True)  # every script is a static file
    token = csrf_from(response.get_data(as_text=True))
    signed_in = client.post("/login", data={"email": alice.email, "password": PASSWORD, "csrf_token": token})
    cookie = signed_in.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    original = client.get("/static/app.js")
    assert original.status_code == 200 and "no-store" not in original.headers.get("Cache-Control", "")


def test_open_redirects_are_refused(client, alice):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    for target, expected in [("//evil.example/x", "/upload"), ("https://evil.example", "/upload"),
                             ("/documents?q=a", "/documents?q=a")]:
        client.post("/logout", data={"csrf_token": token})
        token = csrf_from(client.get("/login").get_data(as_text=True))
        response = client.post(f"/login?next={target}", data={"email": alice.email, "password": PASSWORD,
                                                                "csrf_token": token})
        assert response.headers["Location"] == expected
        token = csrf_from(client.get("/account").get_data(as_text=True))


def test_health_and_readiness(client, redis_url, admin):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"]["ok"] and checks["broker"]["ok"]
    assert not checks["workers"]["ok"] and "leximind worker" in checks["workers"]["detail"]
    # a real Celery worker on the broker (listening on a queue of its own, so it takes no real work)
    probe = Celery("readyz-probe", broker=redis_url, set_as_current=False)
    probe.conf.task_default_queue = "readyz-probe"
    with start_worker(probe, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        response = _ready_within_tries(client)
        assert response.status_code == 200, response.get_json()
        # anonymous callers learn that a worker answers, not which hosts serve: only an admin sees names
        assert response.get_json()["checks"]["workers"]["detail"] == "1 worker(s)"
        sign_in(client, admin)
        response = _ready_within_tries(client)
        assert response.status_code == 200, response.get_json()
        named = response.get_json()["checks"]["workers"]["detail"]
        assert named.startswith("1 worker(s): ") and len(named) > len("1 worker(s): ")


def _ready_within_tries(client, tries: int = 10):
    """The worker takes a moment to start listening for broadcasts, and a ping can miss its reply window."""
    for _ in range(tries):
        response = client.get("/readyz")
        if response.status_code == 200:
            break
    return response


def test_readiness_says_when_the_broker_is_down(app_factory):
    client = app_factory(BROKER_URL="redis://127.0.0.1:1/0", RATELIMIT_STORAGE_URI="memory://").test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"]["ok"] and not checks["broker"]["ok"] and "unreachable" in checks["broker"]["detail"]


def _session_cookie(client) -> str:
    return client.get_cookie("session").value


def _signed_in_with(app, cookie: str) -> bool:
    other = app.test_client()
    other.set_cookie("session", cookie)
    return other.get("/account").status_code == 200


def test_signing_out_ends_the_session_on_the_server(app, client, alice):
    token = sign_in(client, alice)
    copied = _session_cookie(client)
    assert _signed_in_with(app, copied)
    assert "lms_" not in client.get("/account").get_data(as_text=True)  # sessions are not listed as API tokens
    client.post("/logout", data={"csrf_token": token})
    assert not _signed_in_with(app, copied)


def test_sign_out_everywhere_else(app, alice):
    first, second = app.test_client(), app.test_client()
    token = sign_in(first, alice)
    sign_in(second, alice)
    page = first.get("/account").get_data(as_text=True)
    assert "signed in on 2 browsers" in page
    first.post("/account/sessions/end-others", data={"csrf_token": token})
    assert first.get("/account").status_code == 200
    assert second.get("/account").status_code == 302


def test_a_session_secret_is_not_an_api_token(app, client, alice):
    from flask.sessions import SecureCookieSessionInterface  # the cookie is signed; its content is readable

    sign_in(client, alice)
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    secret = serializer.loads(_session_cookie(client))["_user_id"]
    assert secret.startswith("lms_")
    assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_old_sessions_are_refused(app_factory, alice):
    app = app_factory(PERMANENT_SESSION_LIFETIME=1)
    client = app.test_client()
    sign_in(client, alice)
    time.sleep(1.5)
    assert client.get("/account").status_code == 302


def test_readiness_is_a_page_for_a_browser_and_json_for_probes(client):
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = client.get("/readyz", headers={"Accept": browser})
    text = page.get_data(as_text=True)
    assert page.status_code == 503 and page.mimetype == "text/html"  # no worker runs in this test
    assert "Status: not ready" in text and "Database" in text and "leximind worker" in text
    assert "does not answer" in text
    for accept in ("*/*", "application/json", None):
        probe = client.get("/readyz", headers={"Accept": accept} if accept else {})
        assert probe.status_code == 503 and probe.get_json()["status"] == "not ready"


def test_each_account_has_its_own_rate_limit_and_its_key_holds_no_secret(app_factory, alice, bob, redis_url):
    """Token users shared one counter (the key was current_user.get_id(), "" for a token), and a browser
    session's key held its session secret in Redis."""
    import redis

    client = app_factory(UPLOAD_RATE_LIMIT="1 per hour").test_client()

    def upload(person):
        return client.post("/api/v1/documents", headers=person.bearer,
                           data={"files": [(io.BytesIO(b"hello"), "a.txt")]}).status_code

    assert upload(alice) == 202
    assert upload(bob) == 202  # Bob's first upload does not count against Alice's
    assert upload(alice) == 429
    keys = [k.decode() for k in redis.Redis.from_url(redis_url).keys("*LIMITER*")]
    assert any(f"user:{alice.id}/" in k for k in keys) and not any("user:/" in k for k in keys)


def test_a_refused_training_form_does_not_count_against_the_limit(app_factory, admin):
    """As in the API: only a run that starts (the 303 to its page) counts; a form sent back is free."""
    client = app_factory(TRAINING_RATE_LIMIT="1 per hour").test_client()
    token = sign_in(client, admin)
    form = {"csrf_token": token, "datasets": ["bbc"], "tasks": ["summary"], "method": "lora", "epochs": "1",
            "include_corrections": "y"}
    assert [client.post("/training/runs", data={**form, "epochs": "0"}).status_code for _ in range(3)] == [400] * 3
    assert client.post("/training/runs", data=form).status_code == 303
    run_id = client.get("/api/v1/training-runs", headers=admin.bearer).get_json()["training_runs"][0]["id"]
    client.post(f"/api/v1/training-runs/{run_id}/cancel", headers=admin.bearer)
    assert client.post("/training/runs", data=form).status_code == 429
