"""Real headless Chromium against a real server: the flows people use, with a screenshot of every page.

Documents are moved along by tests.web.live.StandInWorker (real extraction and the real inference loop
with a keyword predictor in place of the model). Screenshots land in test-artifacts/screenshots/.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import ApiToken, Feedback, TrainingRun
from db.session import session_scope
from tests.web import seed
from tests.web.conftest import PASSWORD, Person
from tests.web.live import LiveServer, StandInWorker

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
UPLOADS = ("bbc_sport_199_cp1252.txt", "wikipedia_mozilla_article.html", "doj_chapter13_trustee_handbook_1page.docx")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make chromium)")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        yield launched
        launched.close()


@pytest.fixture()
def shots(artifacts_dir: Path):
    folder = artifacts_dir / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)

    def shot(page, name: str) -> None:
        page.wait_for_load_state("networkidle")
        page.mouse.wheel(0, -100_000)  # from the top, so the sticky header sits where it belongs
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    return shot


@pytest.fixture()
def live(app_factory, clean_db: str) -> Iterator[LiveServer]:
    # production cookie settings: Secure cookies must work on http://127.0.0.1 in a real browser
    app = app_factory(SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=True, TESTING=False)
    with LiveServer(app) as server, StandInWorker(clean_db, delay_s=0.7, train_step_s=0.35, total_steps=60) as worker:
        yield server
    assert not worker.errors, worker.errors


@pytest.fixture()
def page(browser, live):
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=live.url)
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console_errors.append(str(exc)))
    yield page
    context.close()
    # a CSP violation or a script error shows up here
    assert not [e for e in console_errors if "404" not in e], console_errors


def sign_in(page, person: Person) -> None:
    page.goto("/login")
    page.fill("input[name=email]", person.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/upload$"))


def test_upload_watch_open_and_correct(page, live, clean_db, alice, shared_data, shots):
    seed.version(clean_db, "v1", {"topic": {"accuracy": 0.84}}, active=True)
    page.goto("/upload")
    assert "/login" in page.url
    shots(page, "01-sign-in")
    sign_in(page, alice)

    page.set_input_files("#file-input", [str(shared_data / "documents" / name) for name in UPLOADS])
    assert page.locator("#file-rows tr").count() == 3
    assert page.locator("#upload-button").inner_text() == "Upload 3 files"
    shots(page, "02-upload-files-chosen")
    page.click("#upload-button")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    # part way: the page polls every 1.5 s and the stand-in finishes a document about every 0.8 s, so it may
    # show 1 or 2 done (waiting for exactly 1 raced the worker and failed when a poll skipped it)
    expect(page.locator("#stat-done")).to_have_text(re.compile(r"^[12]$"), timeout=30_000)
    shots(page, "03-job-in-progress")

    page.wait_for_selector("#job-state .badge[data-state=done]", timeout=60_000)
    assert page.locator("#stat-done").inner_text() == "3"
    shots(page, "04-job-done")

    page.click("text=wikipedia_mozilla_article.html")
    page.wait_for_selector("h2:has-text('Summary')")
    assert page.locator(".pill.topic").first.inner_text() == "Sci/Tech"
    shots(page, "05-document")

    page.select_option("#feedback-topic", "Business")
    page.click("text=Save correction")
    page.wait_for_selector(".flash-info")
    shots(page, "06-document-corrected")
    with session_scope(clean_db) as session:
        feedback = session.scalars(select(Feedback)).all()
    assert [(f.topic_label, f.user_id) for f in feedback] == [("Business", alice.id)]

    page.click("nav >> text=History")
    assert page.locator("table.history tbody tr").count() == 3
    shots(page, "07-history")
    page.fill("input[name=q]", "mozilla")
    page.press("input[name=q]", "Enter")
    page.wait_for_url(re.compile(r"q=mozilla"))
    assert page.locator("table.history tbody tr").count() == 1
    shots(page, "08-history-search")

    page.click("nav >> text=Jobs")
    shots(page, "09-jobs")

    page.goto("/account")
    page.fill("input[name=name]", "nightly import")
    page.click("text=Create token")
    assert page.locator("#new-token").inner_text().startswith("lm_")
    shots(page, "10-account-token")

    page.goto("/documents/999999")
    assert page.locator(".error-status").inner_text() == "404"
    shots(page, "11-not-found")


@pytest.fixture()
def real_stack(clean_db, redis_url, artifacts_dir, tmp_path):
    """Real Celery extract and infer workers (the e2e harness) with the quick tiny model (one-word summaries)."""
    pytest.importorskip("torch")
    from tests.e2e.conftest import running_stack
    from tests.faults.quick_model import create_quick_artifact

    artifact = create_quick_artifact(artifacts_dir / "web-quick-tiny")
    with running_stack(clean_db, redis_url, artifact, tmp_path) as stack:
        stack.worker("extract", "extract,maintenance", wait=False)
        stack.worker("infer", "infer", wait=False)
        stack.wait_ready(*stack.procs)
        yield stack


@pytest.mark.e2e
def test_upload_through_real_workers(browser, app_factory, real_stack, clean_db, alice, shared_data, shots):
    app = app_factory(SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=True, TESTING=False)
    with LiveServer(app) as server:
        context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=server.url)
        page = context.new_page()
        sign_in(page, alice)
        page.set_input_files("#file-input", [str(shared_data / "documents" / name) for name in UPLOADS])
        page.click("#upload-button")
        page.wait_for_url(re.compile(r"/jobs/\d+$"))
        page.wait_for_selector("#job-state .badge[data-state=done]", timeout=120_000)
        shots(page, "20-real-workers-job-done")
        page.click("text=bbc_sport_199_cp1252.txt")
        page.wait_for_selector("h2:has-text('Summary')")
        current = page.locator(".pill.topic").first.inner_text()
        other = next(o for o in ("business", "sport", "tech") if o != current)
        page.select_option("#feedback-topic", other)
        page.click("text=Save correction")
        page.wait_for_selector(".flash-info")
        shots(page, "21-real-workers-document")
        context.close()
    with session_scope(clean_db) as session:
        assert [f.topic_label for f in session.scalars(select(Feedback))] == [other]


def test_admin_sees_starter_training_then_trains_and_activates(page, live, clean_db, admin, shots):
    with session_scope(clean_db) as session:
        session.add(TrainingRun(params={"recipe": "starter"},
                                state="queued", progress={}, history=[], metrics={}))
    sign_in(page, admin)
    page.wait_for_selector("#model-banner")
    assert "No model" in page.locator("#model-banner").inner_text()
    shots(page, "12-no-model-yet")

    page.click("nav >> text=Training")
    page.wait_for_selector("#live-run")
    expect(page.locator("#live-run [data-field=step]")).to_contain_text("/")
    shots(page, "13-training-starter-live")
    # the starter run finishes, registers v1 and the page reloads itself
    page.wait_for_selector("#live-run", state="detached", timeout=60_000)
    assert page.locator(".version.active").count() == 1

    page.uncheck("input[name=datasets][value=scitldr]")
    page.uncheck("input[name=datasets][value=dialogsum]")
    page.check("input[name=method][value=lora]")
    page.fill("input[name=epochs]", "2")
    shots(page, "14-training-form")
    page.click("text=Start training")
    page.wait_for_url(re.compile(r"/training/runs/\d+$"))
    expect(page.locator("#run-live [data-field=step]")).to_have_text(re.compile(r"^(1\d|[2-9]\d)\b"))
    page.wait_for_selector("#loss-chart svg.chart")
    shots(page, "15-run-live")
    page.wait_for_selector("#run-state .badge[data-state=succeeded]", timeout=60_000)
    page.wait_for_selector("text=Activate v2")
    shots(page, "16-run-finished")

    page.click("text=Activate v2")
    page.wait_for_selector(".flash-info:has-text('v2 is now active')")
    shots(page, "17-training-versions")
    page.click("text=Roll back to the previous version")
    page.wait_for_selector(".flash-info:has-text('v1 is active again')")


def test_a_255_character_file_name_does_not_widen_the_pages(page, clean_db, alice, shots):
    """A long name without spaces used to widen the document page to ~2600 px and run over the History table's
    State and Uploaded columns."""
    long_name = "q" * 251 + ".txt"
    v1 = seed.version(clean_db, "v1", {}, active=True)
    job_id, (doc_id,) = seed.upload(clean_db, alice.id, {long_name: "Markets rallied on the news."})
    seed.finish(clean_db, doc_id, v1, text="Markets rallied on the news.", topic="Business")
    sign_in(page, alice)
    for url in (f"/documents/{doc_id}", "/documents", f"/jobs/{job_id}", "/jobs", "/upload"):
        page.goto(url)
        assert page.get_by_text(long_name[:40], exact=False).first.is_visible(), url
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= page.viewport_size["width"], f"{url} is {width} px wide"
    page.goto("/documents")
    cells = page.locator("table.history tbody tr").first.locator("td")
    name_right = page.evaluate("(el) => el.getBoundingClientRect().right", cells.nth(0).element_handle())
    next_left = page.evaluate("(el) => el.getBoundingClientRect().left", cells.nth(1).element_handle())
    assert name_right <= next_left + 1
    shots(page, "12-history-long-name")


# cells past their card's right edge, leaving out tables meant to scroll sideways (.table-scroll)
CLIPPED_CELLS = """() => [...document.querySelectorAll('main table td')].filter((cell) => {
  if (cell.closest('.table-scroll')) return false;
  const box = cell.closest('.card') || document.documentElement;
  return cell.getBoundingClientRect().right > box.getBoundingClientRect().right + 1;
}).map((cell) => cell.textContent.trim().slice(0, 40))"""


def test_every_page_fits_a_phone_screen(browser, live, world, alice, admin, shots):
    """At 390 px the top bar ran ~200 px past the screen (Sign out and the admin links off to the right, white
    on the page's background) and the tables squeezed their columns to a few letters or cut the last ones off
    at the card's edge."""
    pages = [
        (alice, ["/upload", "/jobs", f"/jobs/{world.alice_job}", "/documents",
                 f"/documents/{world.alice_docs[0]}", "/account"]),
        (admin, ["/training", f"/training/runs/{world.run_id}", "/admin/users", "/account"]),
    ]
    for person, urls in pages:
        context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=live.url)
        page = context.new_page()
        sign_in(page, person)
        for url in urls:
            page.goto(url)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{url} is {width} px wide"
            sign_out = page.locator(".usernav button", has_text="Sign out").bounding_box()
            assert sign_out and sign_out["x"] + sign_out["width"] <= 390, url
            for link in page.locator(".mainnav a").all():
                assert link.is_visible(), url
            assert page.evaluate(CLIPPED_CELLS) == [], url
        shots(page, f"30-phone-{person.role}")
        context.close()


def test_chosen_files_are_readable_on_a_phone(browser, live, alice, shared_data):
    """At 390 px the chosen files' table left the name a column of four letters a line, and ran off the card."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=live.url)
    page = context.new_page()
    sign_in(page, alice)
    page.set_input_files("#file-input", [str(shared_data / "documents" / name) for name in UPLOADS])
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for cell in page.locator("#file-rows td.file-name").all():
        assert cell.bounding_box()["width"] >= 250, cell.inner_text()
    context.close()


def test_the_history_filters_stay_inside_their_card(page, world, alice):
    """With a filter applied, Apply and Clear did not fit the form's last column: Clear ran past the card's
    padding to its edge."""
    sign_in(page, alice)
    page.goto("/documents?q=markets&sort=name")
    card = page.locator("form.filters").bounding_box()
    for control in page.locator("form.filters input, form.filters select, form.filters .button").all():
        box = control.bounding_box()
        assert box["x"] + box["width"] <= card["x"] + card["width"] - 16, control.evaluate("e => e.outerHTML")
    page.click("text=Clear filters")
    page.wait_for_url(re.compile(r"/documents$"))


def test_the_model_chip_follows_when_the_first_model_is_ready(page, live, clean_db, alice):
    """When the starter model finished, the banner went away but the top bar kept saying "No model yet"."""
    with session_scope(clean_db) as session:
        session.add(TrainingRun(params={"recipe": "starter"}, state="queued", progress={}, history=[], metrics={}))
    sign_in(page, alice)
    expect(page.locator(".model-chip")).to_have_text("No model yet")
    page.wait_for_selector("#model-banner", state="hidden", timeout=60_000)
    expect(page.locator(".model-chip")).to_have_text(re.compile(r"^Model v\d+$"))


def test_an_upload_after_the_session_ended_says_to_sign_in(page, live, clean_db, alice, shared_data):
    """The script followed the redirect to the sign-in page and said "The upload failed (HTTP 200). Try again.",
    which could never work."""
    seed.version(clean_db, "v1", {}, active=True)  # no "no model yet" banner, whose poll would reload the page
    sign_in(page, alice)
    page.set_input_files("#file-input", [str(shared_data / "documents" / UPLOADS[0])])
    page.context.clear_cookies()
    page.click("#upload-button")
    expect(page.locator("#upload-error")).to_contain_text("You are signed out, so nothing was uploaded.")
    page.click("#upload-error >> text=Sign in again")
    page.wait_for_url(re.compile(r"/login\?next=%2Fupload$"))


def test_the_loss_chart_is_readable_on_a_phone(browser, live, world, admin):
    """At 390 px the run page's charts shrank to the screen and their tick labels to about 5 px."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=live.url)
    page = context.new_page()
    sign_in(page, admin)
    page.goto(f"/training/runs/{world.run_id}")
    heights = page.locator("#loss-chart .chart .tick").evaluate_all(
        "(ticks) => ticks.map((t) => t.getBoundingClientRect().height)")
    assert heights and min(heights) >= 10, heights
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()


def test_the_drop_zone_shows_keyboard_focus(page, live, alice):
    """Tabbing to the (invisible) file input showed nothing at all: no way to tell where the focus was."""
    sign_in(page, alice)
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "file-input":
            break
    assert page.evaluate("document.activeElement.id") == "file-input"
    assert page.locator("#dropzone").evaluate("(zone) => getComputedStyle(zone).outlineStyle") == "solid"


def test_reloading_the_new_token_page_creates_no_second_token(page, live, clean_db, alice):
    """The new token's page stayed at POST /account/tokens: a reload sent the form again and made another token."""
    sign_in(page, alice)
    page.goto("/account")
    page.fill("input[name=name]", "nightly import")
    page.click("text=Create token")
    assert page.locator("#new-token").inner_text().startswith("lm_")
    page.reload()
    assert page.url.endswith("/account") and page.locator("#new-token").count() == 0
    with session_scope(clean_db) as session:
        names = session.scalars(select(ApiToken.name).where(ApiToken.user_id == alice.id)).all()
    assert names.count("nightly import") == 1, names
