"""Property-based tests (hypothesis) on what a client controls in an upload: file names, bytes, counts.

Whatever is sent, the API answers 202 with the job, or a 4xx JSON error with a code and a message; never a
5xx. What it stores is safe to show and to hand back: the stored name is one path component without NULs
or separators, the bytes come back unchanged, and the download header carries the name percent-encoded.
"""
from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.web.conftest import sign_in

pytestmark = [pytest.mark.slow]

EXAMPLES = 40
HOSTILE_NAMES = st.sampled_from([
    "../../etc/passwd.txt", "..\\..\\windows\\win.ini.txt", "/abs/path.md", "a\x00b.txt", "\u202egnp.txt",
    "CON.txt", "line\r\nSet-Cookie: x=1.txt", "x" * 5000 + ".md", ".txt", "  .md", "<script>.html", "%00.txt",
])
NAMES = st.one_of(HOSTILE_NAMES, st.text(min_size=1, max_size=300).map(lambda s: s + st_ext(s)))
CONTENT = st.one_of(st.binary(min_size=0, max_size=2048), st.text(max_size=500).map(str.encode))


def st_ext(seed: str) -> str:
    return (".txt", ".md", ".html", ".pdf", ".docx", "")[len(seed) % 6]


def as_sent(name: str) -> str:
    """A file name as browsers and HTTP libraries put it in a multipart header (HTML5: CR, LF and quote
    escaped). werkzeug's test client writes it raw, and a raw CR LF would end the part's header early."""
    return name.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


def post(client, token: str, files: list[tuple[bytes, str]]):
    return client.post("/api/v1/documents", headers={"Authorization": f"Bearer {token}"},
                       data={"files": [(io.BytesIO(data), as_sent(name)) for data, name in files]},
                       content_type="multipart/form-data")


def assert_clean_error(response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:300])
    error = response.get_json()["error"]
    assert error["code"] and len(error["message"]) > 20


@given(files=st.lists(st.tuples(CONTENT, NAMES), min_size=1, max_size=4))
@example(files=[(b"", "line\r\nSet-Cookie: x=1.txt"), (b"\x00", "../../etc/passwd.txt")])
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_any_upload_is_accepted_or_refused_clearly(app, alice, files):
    client = app.test_client()
    response = post(client, alice.token, files)
    if response.status_code != 202:
        assert_clean_error(response)
        return
    body = response.get_json()
    assert len(body["documents"]) == len(files)
    sign_in(client, alice)
    for (data, _), shown in zip(files, body["documents"], strict=True):
        name = shown["filename"]
        assert name and "/" not in name and "\\" not in name and "\x00" not in name and len(name) <= 255
        download = client.get(f"/documents/{shown['id']}/original")
        assert download.status_code == 200 and download.data == data
        disposition = download.headers["Content-Disposition"]
        assert disposition.startswith("attachment;") and "\r" not in disposition and "\n" not in disposition


@given(count=st.integers(min_value=0, max_value=1000))
@settings(max_examples=8, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_any_number_of_files_is_accepted_or_refused_clearly(app, alice, count):
    response = post(app.test_client(), alice.token, [(f"doc {i}".encode(), f"{i}.txt") for i in range(count)])
    limit = app.config["MAX_FILES_PER_UPLOAD"]
    if 1 <= count <= limit:
        assert response.status_code == 202, response.get_data(as_text=True)[:300]
    else:
        assert_clean_error(response)
        assert response.get_json()["error"]["code"] in ("no_files", "too_many_files")


@given(params=st.dictionaries(st.sampled_from(["q", "state", "topic", "emotion", "model_version", "from", "to",
                                               "sort", "after", "before", "limit"]),
                              st.text(max_size=40), max_size=5))
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_any_history_query_is_answered_or_refused_clearly(app, world, alice, params):
    response = app.test_client().get("/api/v1/documents", query_string=params, headers=alice.bearer)
    if response.status_code != 200:
        assert_clean_error(response)
