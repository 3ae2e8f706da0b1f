"""Secrets never reach the logs: a whole run of real processes, then every log line is searched.

gunicorn serving the web app, extract and infer workers and beat, all started with a SECRET_KEY and a
database URL that carries a password (the test server trusts loopback, so the password is never checked,
only carried). Through HTTP: sign in with the right and a wrong password, make an API token, upload and
poll with it, revoke it and try it again, send a malformed header. Then no log of any process may contain
the password, any token, the SECRET_KEY or the database password.
"""
from __future__ import annotations

import re
import time
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import redis
import requests

from bench.load import gunicorn
from db.accounts import create_user
from db.session import session_scope
from leximind.services import free_port, port_open
from tests.e2e.conftest import running_stack, wait_for
from tests.faults import figures

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(300)]

PASSWORD = "Pa55word-that-must-not-leak"
DB_PASSWORD = "db-Secret/With@Specials"


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


@pytest.fixture()
def stack(clean_db, redis_url, quick_artifact, tmp_path):
    pytest.importorskip("model.pipeline", reason="the inference pipeline (model/pipeline.py) is not there yet")
    if urlsplit(clean_db).hostname in (None, ""):
        pytest.skip("needs a TCP database URL to carry a password")
    redis.Redis.from_url(redis_url).flushall()
    with running_stack(clean_db, redis_url, quick_artifact, tmp_path) as running:
        yield running


def test_no_secret_reaches_any_log(stack, clean_db):
    secret_key = "flask-secret-" + uuid.uuid4().hex
    database_url = with_password(clean_db, DB_PASSWORD)
    with session_scope(clean_db) as session:
        create_user(session, "logs@example.com", PASSWORD)
    stack.env.update({"SECRET_KEY": secret_key, "DATABASE_URL": database_url, "LEXIMIND_SECURE_COOKIES": "0",
                      "LEXIMIND_LOG_LEVEL": "DEBUG", "LEXIMIND_LOG_FORMAT": "json"})
    port = free_port()
    web = gunicorn(port, stack.env, stack.logs, workers=1, threads=4)
    try:
        extract = stack.worker("extract", "extract,maintenance", wait=False)
        infer = stack.worker("infer", "infer", wait=False)
        stack.beat()
        stack.wait_ready(extract, infer)
        wait_for(lambda: port_open("127.0.0.1", port), 60, "gunicorn", stack)
        base = f"http://127.0.0.1:{port}"
        browser = requests.Session()
        form = csrf(browser.get(f"{base}/login").text)
        wrong = browser.post(f"{base}/login", data={"email": "logs@example.com", "password": PASSWORD + "x",
                                                    "csrf_token": form})
        assert wrong.status_code == 400
        signed = browser.post(f"{base}/login", data={"email": "logs@example.com", "password": PASSWORD,
                                                     "csrf_token": form}, allow_redirects=False)
        assert signed.status_code == 302
        account = browser.get(f"{base}/account").text
        made = browser.post(f"{base}/account/tokens", data={"name": "logs", "csrf_token": csrf(account)})
        token = made.text.split('id="new-token">')[1].split("<")[0]
        bearer = {"Authorization": f"Bearer {token}"}
        upload = requests.post(f"{base}/api/v1/documents", headers=bearer,
                               files=[("files", (f"n{i}.txt", f"note {i} about the budget".encode())) for i in range(5)])
        assert upload.status_code == 202, upload.text
        ids = [d["id"] for d in upload.json()["documents"]]
        wait_for(lambda: figures.finished(clean_db, ids) == len(ids), 120, "the documents", stack)
        assert requests.get(f"{base}/api/v1/jobs/{upload.json()['job_id']}", headers=bearer).status_code == 200
        page = browser.get(f"{base}/account").text
        token_id = page.split("/account/tokens/")[1].split("/revoke")[0]
        browser.post(f"{base}/account/tokens/{token_id}/revoke", data={"csrf_token": csrf(page)})
        assert requests.get(f"{base}/api/v1/jobs", headers=bearer).status_code == 401
        assert requests.get(f"{base}/api/v1/jobs", headers={"Authorization": f"Token {token}"}).status_code == 401
        time.sleep(1.0)  # let the last log lines be written
    finally:
        web.terminate()
        web.wait(20)
    logs = {path.name: path.read_text(errors="replace") for path in stack.logs.iterdir()}
    assert "POST /api/v1/documents" in logs["web.log"], "the access log should be in the search"
    assert any(name.startswith("infer") for name in logs)
    secrets = {"password": PASSWORD, "token": token, "SECRET_KEY": secret_key, "database password": DB_PASSWORD,
               "database password, URL-encoded": quote(DB_PASSWORD, safe="")}
    leaks = [f"{what} in {name}" for name, text in logs.items() for what, value in secrets.items() if value in text]
    assert not leaks, leaks
    assert sum(len(text.splitlines()) for text in logs.values()) > 50, "the run should have logged something"
