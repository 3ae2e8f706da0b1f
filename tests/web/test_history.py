"""History listing (filters, search, sorting, keyset pages), exports, and job progress with queue and ETA."""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from db.history import (
    COUNT_CAP,
    HistoryError,
    HistoryFilter,
    iter_documents,
    job_status,
    list_documents,
    measured_throughput,
)
from db.models import DocState, Document, Feedback
from db.session import session_scope
from tests.web import seed
from tests.web.conftest import sign_in

DAY = datetime(2025, 3, 10, 12, tzinfo=UTC)


@pytest.fixture()
def library(clean_db, alice, bob):
    """Alice: 30 documents over 3 days, topics and emotions rotating, two model versions; Bob: one."""
    v1 = seed.version(clean_db, "v1", {})
    v2 = seed.version(clean_db, "v2", {}, active=True)
    names = {f"doc-{i:02d}.txt": f"Report {i} about {['football', 'markets', 'browsers'][i % 3]}" for i in range(30)}
    _, ids = seed.upload(clean_db, alice.id, names)
    for i, doc_id in enumerate(ids):
        if i % 10 == 9:
            seed.fail(clean_db, doc_id, "no_text", "The file holds no readable text.")
            continue
        seed.finish(clean_db, doc_id, v2 if i % 2 else v1, text=names[f"doc-{i:02d}.txt"],
                    topic=["Sports", "Business", "Sci/Tech"][i % 3], emotions=(("joy",) if i % 4 == 0 else ("fear",)),
                    created_at=DAY + timedelta(days=i // 10, minutes=i))
    _, bob_ids = seed.upload(clean_db, bob.id, {"bob.txt": "football markets browsers"})
    seed.finish(clean_db, bob_ids[0], v2, text="football markets browsers", topic="Sports")
    return ids


def ids_of(session, flt, **kwargs):
    return [row.id for row in list_documents(session, flt, limit=100, **kwargs).rows]


def test_filters_each_narrow_to_the_right_documents(clean_db, library, alice):
    with session_scope(clean_db) as s:
        def find(**kw):
            return set(ids_of(s, HistoryFilter(owner_id=alice.id, **kw)))
        assert len(find()) == 30
        assert find(topic="Business") == {library[i] for i in range(30) if i % 3 == 1 and i % 10 != 9}
        assert find(emotion="joy") == {library[i] for i in range(30) if i % 4 == 0 and i % 10 != 9}
        assert find(state="failed") == {library[9], library[19], library[29]}
        assert find(model_version="v1") == {library[i] for i in range(30) if i % 2 == 0 and i % 10 != 9}
        assert find(date_from=date(2025, 3, 11), date_to=date(2025, 3, 11)) == {
            library[i] for i in range(10, 20) if i != 19}  # the failed one keeps its upload time (today)
        # (failed documents have no text to search, only their file names)
        assert find(q="football") == {library[i] for i in range(0, 30, 3) if i % 10 != 9}
        assert find(q="market") == {library[i] for i in range(1, 30, 3) if i % 10 != 9}  # stemmed: "markets"
        assert find(q="doc-09.txt") == {library[9]}
        # one term is also a part of a file name (the text parser keeps a file name as one token); LIKE's
        # wildcards in it are literal: no file is named doc_0..., and none holds a %
        assert find(q="doc-0") == {library[i] for i in range(10)}
        assert find(q="C-1") == {library[i] for i in range(10, 20)}
        assert find(q="doc_0") == set() and find(q="%") == set()
        assert find(q="football -report") == set()
        assert find(q="football", topic="Sports", emotion="joy") == {library[0], library[12], library[24]}


def test_bad_filters_say_what_to_change(alice):
    with pytest.raises(HistoryError, match="Unknown sort"):
        HistoryFilter(owner_id=alice.id, sort="random")
    with pytest.raises(HistoryError, match="swap them"):
        HistoryFilter(owner_id=alice.id, date_from=date(2025, 2, 1), date_to=date(2025, 1, 1))


@pytest.mark.parametrize("sort", ["newest", "oldest", "name", "name_desc"])
def test_keyset_pages_cover_everything_once_both_ways(clean_db, library, alice, sort):
    flt = HistoryFilter(owner_id=alice.id, sort=sort)
    with session_scope(clean_db) as s:
        everything = ids_of(s, flt)
        pages, cursor = [], None
        while True:
            page = list_documents(s, flt, after=cursor, limit=7)
            pages.append([r.id for r in page.rows])
            assert page.total == 30 and not page.total_capped
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert [i for p in pages for i in p] == everything
        # and back: `before` the first row of the last page gives the page before it
        last = list_documents(s, flt, after=cursor, limit=7) if cursor else None
        back = list_documents(s, flt, before=last.prev_cursor, limit=7)
        assert [r.id for r in back.rows] == pages[-2]
    if sort == "name":
        assert everything == sorted(library)
    if sort == "newest":
        with session_scope(clean_db) as s:
            rows = list_documents(s, flt, limit=100).rows
        assert [r.created_at for r in rows] == sorted((r.created_at for r in rows), reverse=True)


def test_broken_cursors_are_refused(clean_db, alice):
    with session_scope(clean_db) as s, pytest.raises(HistoryError, match="first page"):
        list_documents(s, HistoryFilter(owner_id=alice.id), after="not-a-cursor")


def test_total_is_capped_for_huge_sets(clean_db, alice, monkeypatch):
    import db.history
    monkeypatch.setattr(db.history, "COUNT_CAP", 5)
    seed.upload(clean_db, alice.id, {f"{i}.txt": f"text {i}" for i in range(8)})
    with session_scope(clean_db) as s:
        page = list_documents(s, HistoryFilter(owner_id=alice.id), limit=3)
    assert (page.total, page.total_capped) == (5, True)
    assert COUNT_CAP == 10_000


def test_exports_hold_the_whole_filtered_set(client, clean_db, library, alice):
    sign_in(client, alice)
    response = client.get("/documents/export.csv?topic=Business&sort=name")
    assert response.headers["Content-Disposition"].startswith('attachment; filename="leximind-history-')
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    expected = [f"doc-{i:02d}.txt" for i in range(30) if i % 3 == 1 and i % 10 != 9]
    assert [r["filename"] for r in rows] == expected
    assert rows[0]["topic"] == "Business" and rows[0]["model_version"] in ("v1", "v2")
    data = json.loads(client.get("/documents/export.json?state=failed").get_data(as_text=True))
    assert sorted(d["filename"] for d in data) == ["doc-09.txt", "doc-19.txt", "doc-29.txt"]
    assert data[0]["error"] == "The file holds no readable text."
    with session_scope(clean_db) as s:
        assert len(list(iter_documents(s, HistoryFilter(owner_id=alice.id), batch=4))) == 30


def test_csv_cells_cannot_become_formulas(client, clean_db, alice):
    _, ids = seed.upload(clean_db, alice.id, {"=HYPERLINK(evil).txt": "text"})
    sign_in(client, alice)
    rows = list(csv.DictReader(io.StringIO(client.get("/documents/export.csv").get_data(as_text=True))))
    assert rows[0]["filename"] == "'=HYPERLINK(evil).txt"


def test_history_page_renders_filters_and_pages(client, library, alice):
    sign_in(client, alice)
    page = client.get("/documents?topic=Sports&sort=oldest").get_data(as_text=True)
    assert "doc-00.txt" in page and "doc-01.txt" not in page
    assert 'value="Sports" selected' in page or "<option selected>Sports</option>" in page
    assert "export.csv?topic=Sports&amp;sort=oldest" in page


def test_history_page_keeps_the_form_and_names_a_bad_filter(client, library, alice):
    """A bad date, sort or page link used to give a bare error page: the form and the other filters were lost."""
    sign_in(client, alice)
    response = client.get("/documents?topic=Sports&from=31/01/2025&sort=oldest")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="filter-problems"' in page and "<strong>From</strong>: `from` must be a date like" in page
    assert 'role="search"' in page and "doc-00.txt" in page and "doc-01.txt" not in page  # topic still applied
    assert ("<option selected>Sports</option>" in page and 'value="oldest" selected' in page
            and 'name="from" value="" aria-invalid="true"' in page)
    assert "export.csv?topic=Sports&amp;sort=oldest" in page and "from=31" not in page

    response = client.get("/documents?topic=Sports&after=not-a-cursor")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "<strong>Page link</strong>: That page link is broken" in page and "from the first page" in page
    assert "doc-00.txt" in page and "<option selected>Sports</option>" in page

    response = client.get("/documents?state=lost&to=2025-01-01&from=2025-02-01")
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "Unknown state &#39;lost&#39;" in page and "swap them" in page
    # the To left out still shows what was typed, to be fixed in place (the field came back empty)
    assert 'name="to" value="2025-01-01" aria-invalid="true"' in page
    assert client.get("/api/v1/documents?from=31/01/2025", headers=alice.bearer).status_code == 400


def test_job_progress_queue_position_and_eta(clean_db, alice, bob):
    seed.version(clean_db, "v1", {}, active=True)
    _, ahead = seed.upload(clean_db, bob.id, {f"b{i}.txt": f"bob {i}" for i in range(4)})
    job_id, mine = seed.upload(clean_db, alice.id, {"a.txt": "alice a", "b.txt": "alice b"})
    _, behind = seed.upload(clean_db, bob.id, {"late.txt": "after alice"})
    with session_scope(clean_db) as s:
        status = job_status(s, alice.id, job_id, throughput=2.0)
        assert (status.state, status.total, status.in_progress) == ("queued", 2, 2)
        assert status.queue_position == 4           # Bob's four earlier documents, not the later one
        assert status.eta_seconds == pytest.approx((4 + 2) / 2.0)
        assert job_status(s, bob.id, job_id) is None  # not Bob's
    seed.finish(clean_db, ahead[0], 1, text="x", topic="World")
    seed.finish(clean_db, mine[0], 1, text="x", topic="World")
    seed.fail(clean_db, mine[1], "no_text", "The file holds no readable text.")
    with session_scope(clean_db) as s:
        status = job_status(s, alice.id, job_id)
        assert (status.state, status.done, status.failed, status.queue_position, status.eta_seconds) == (
            "partial", 1, 1, None, None)
    assert behind


def test_a_job_waiting_for_the_first_model_says_so(client, clean_db, alice):
    """While the starter model trains, a job's documents wait for the model, not for a queue ahead of them:
    no ETA from other throughput, and the page and API say what they wait for."""
    job_id, _ = seed.upload(clean_db, alice.id, {"a.txt": "alice a"})
    with session_scope(clean_db) as s:
        status = job_status(s, alice.id, job_id, throughput=5.0)
    assert status.waiting_for_model and status.eta_seconds is None
    assert client.get(f"/api/v1/jobs/{job_id}", headers=alice.bearer).get_json()["waiting_for_model"] is True
    sign_in(client, alice)
    assert "waits for the model" in client.get(f"/jobs/{job_id}").get_data(as_text=True)
    seed.version(clean_db, "v1", {}, active=True)
    with session_scope(clean_db) as s:
        status = job_status(s, alice.id, job_id, throughput=5.0)
    assert not status.waiting_for_model and status.eta_seconds == pytest.approx(1 / 5.0)


def test_throughput_is_measured_from_recent_finishes(clean_db, alice):
    _, ids = seed.upload(clean_db, alice.id, {f"{i}.txt": f"t {i}" for i in range(10)})
    now = datetime.now(UTC)
    with session_scope(clean_db) as s:
        assert measured_throughput(s) is None
        s.execute(update(Document).where(Document.id.in_(ids)).values(state=DocState.DONE.value,
                                                                       finished_at=now - timedelta(seconds=20)))
    with session_scope(clean_db) as s:
        assert measured_throughput(s, now=now) == pytest.approx(10 / 20)
        assert measured_throughput(s, now=now + timedelta(hours=1)) is None  # idle workers: no estimate


def test_the_correction_form_shows_what_was_saved(client, world, alice):
    """After saving, the form used to show the model's old values again."""
    token = sign_in(client, alice)
    url = f"/documents/{world.alice_docs[0]}"
    before = client.get(url).get_data(as_text=True)
    assert "<option selected" not in before and "Corrected by hand." not in before
    response = client.post(f"{url}/feedback", data={"topic": "World", "emotions": ["anger"],
                                                    "summary": "Corrected by hand.", "csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"{url}#correct")
    page = client.get(url).get_data(as_text=True)
    assert re.search(r'<option selected value="World">', page)
    assert re.search(r'<input checked[^>]*value="anger"', page)
    assert not re.search(r'<input checked[^>]*value="joy"', page)  # the model's choice, replaced
    assert re.search(r'name="summary" rows="5">\s*Corrected by hand.</textarea>', page)
    client.post(f"{url}/feedback", data={"topic": "Sports", "emotions": ["anger"], "summary": "Corrected by hand.",
                                         "csrf_token": token})
    page = client.get(url).get_data(as_text=True)
    assert re.search(r'<option selected value="Sports">', page) and "Corrected by hand." in page


def test_saving_the_correction_form_untouched_stores_nothing_and_says_so_by_the_form(client, world, alice,
                                                                                    clean_db):
    """A second click on Save stored the same correction again (training counted it twice), and every message
    showed at the top of the page while the page landed on the form (#correct), out of sight."""
    token = sign_in(client, alice)
    url = f"/documents/{world.alice_docs[0]}"
    untouched = {"topic": "", "emotions": ["joy", "surprise"], "summary": "Stocks rallied as markets cheered the "
                 "central bank.", "csrf_token": token}
    assert client.post(f"{url}/feedback", data=untouched).status_code == 400
    corrected = {"topic": "World", "emotions": ["anger"], "summary": "Corrected by hand.", "csrf_token": token}
    assert client.post(f"{url}/feedback", data=corrected).status_code == 303
    page = client.get(url).get_data(as_text=True)
    card = page[page.index('id="correct"'):]
    assert "the correction is saved" in card and page.count("the correction is saved") == 1

    again = client.post(f"{url}/feedback", data=corrected)
    page = again.get_data(as_text=True)
    assert again.status_code == 400
    assert "Nothing to save" in page[page.index('id="correct"'):]
    with session_scope(clean_db) as session:
        assert len(session.scalars(select(Feedback)).all()) == 1


def test_a_long_failure_reads_in_full_on_its_page_and_shortened_in_the_list(client, clean_db, alice):
    """Each failed row of History printed its whole message (four lines and more), burying the list."""
    sign_in(client, alice)
    _, (doc_id,) = seed.upload(clean_db, alice.id, {"long.txt": "text"})
    message = "The model failed on this document. " + "Details of what went wrong, word after word. " * 8
    seed.fail(clean_db, doc_id, "inference_error", message.strip())
    listing = client.get("/documents").get_data(as_text=True)
    assert message.strip() not in listing and message[:100] in listing
    assert message.strip() in client.get(f"/documents/{doc_id}").get_data(as_text=True)


def test_a_document_without_a_result_uses_the_whole_width(client, world, alice):
    """A failed document's page kept an empty right-hand column: its text sat in two thirds of the page."""
    sign_in(client, alice)
    failed = client.get(f"/documents/{world.alice_docs[1]}").get_data(as_text=True)
    done = client.get(f"/documents/{world.alice_docs[0]}").get_data(as_text=True)
    assert "grid-2-1" not in failed and "<aside" not in failed and "could not be processed" in failed
    assert "grid-2-1" in done and "Correct this result" in done


def test_a_long_text_says_where_the_rest_is_with_links(client, clean_db, alice):
    """The page ended a long text with "The full text is in the API (?text=1)": no link, API words."""
    sign_in(client, alice)
    v1 = seed.version(clean_db, "v1", {}, active=True)
    _, (doc_id,) = seed.upload(clean_db, alice.id, {"long.txt": "x"})
    seed.finish(clean_db, doc_id, v1, text="word " * 5000, topic="World")
    page = client.get(f"/documents/{doc_id}").get_data(as_text=True)
    assert f'href="/api/v1/documents/{doc_id}?text=1"' in page and f'href="/documents/{doc_id}/original"' in page


def test_a_finished_job_says_where_the_reasons_are(client, clean_db, alice):
    """The job page said "Failed documents say why above" over a list that is below it, and after a reload
    only "All documents are finished." whether or not any had failed."""
    sign_in(client, alice)
    v1 = seed.version(clean_db, "v1", {}, active=True)
    job_id, (good, bad) = seed.upload(clean_db, alice.id, {"good.txt": "fine", "bad.pdf": "broken"})
    seed.finish(clean_db, good, v1, text="fine", topic="World")
    seed.fail(clean_db, bad, "corrupt_file", "The PDF is damaged.")
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "Finished: 1 done, 1 failed. Each failed document says why in the list below." in page
    script = Path(__file__).parents[2] / "webapp" / "static" / "app.js"  # the live page's words when it finishes
    assert "says why in the list below" in script.read_text(encoding="utf-8")


def test_an_older_page_of_jobs_links_back_to_the_newest(client, clean_db, alice):
    sign_in(client, alice)
    for number in range(51):
        seed.upload(clean_db, alice.id, {f"n{number}.txt": "text"})
    first = client.get("/jobs").get_data(as_text=True)
    older = re.search(r'href="(/jobs\?before=\d+)"[^>]*>Older', first)
    assert older and "← Newest" not in first
    page = client.get(older.group(1)).get_data(as_text=True)
    assert 'href="/jobs">← Newest</a>' in page and "Older →" not in page
