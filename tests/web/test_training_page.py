"""The training page's form (admins)."""
from __future__ import annotations

import json
import re

from db import versions
from db.session import session_scope
from db.versions import register_version
from tests.web import seed
from tests.web.conftest import csrf_from, sign_in

BBC_TOPICS = ["business", "entertainment", "politics", "sport", "tech"]


def test_the_form_as_it_first_shows_starts_a_run(client, admin, clean_db, tmp_path):
    """With the starter model active (a BBC topic head) every dataset was ticked, AG News included, with the
    Topic task: the first click on Start training, untouched, was refused for the topic mismatch."""
    folder = tmp_path / "v1"
    folder.mkdir()
    (folder / "labels.json").write_text(json.dumps({"topic": BBC_TOPICS, "emotion": []}))
    with session_scope(clean_db) as session:
        register_version(session, path=str(folder), source="starter", name="v1", activate=True)
    sign_in(client, admin)
    page = client.get("/training").get_data(as_text=True)

    checked = {(m["name"], m["value"]) for m in re.finditer(
        r'<input(?=[^>]*\bchecked\b)[^>]*\bname="(?P<name>[a-z_]+)"[^>]*\bvalue="(?P<value>[^"]*)"', page)}
    datasets = sorted(value for name, value in checked if name == "datasets")
    assert "ag_news" not in datasets and datasets == sorted(["goemotions", "bbc", "scitldr", "dialogsum"])
    assert "AG News topics (World, Sports, Business, Sci/Tech) do not match" in page  # still says why

    form = {"csrf_token": csrf_from(page), "epochs": "1", "learning_rate": "", "method": "lora",
            "datasets": datasets, "tasks": sorted(value for name, value in checked if name == "tasks"),
            "include_corrections": "y"}
    response = client.post("/training/runs", data=form)
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    run_id = int(response.headers["Location"].rsplit("/", 1)[1])
    # the message outlives the state it would name: it stayed "is queued" beside a Running, then Succeeded badge
    flashed = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Training run {run_id} is created" in flashed and "is queued" not in flashed
    client.post(f"/training/runs/{run_id}/cancel", data={"csrf_token": form["csrf_token"]})


def test_roll_back_is_offered_only_with_a_version_to_go_back_to(client, admin, clean_db):
    """With the first version active and a newer one never activated the page offered "Roll back to the previous
    version", and the click ended on a bare 409 page titled "The request could not be understood"."""
    v1 = seed.version(clean_db, "v1", {}, active=True)
    v2 = seed.version(clean_db, "v2", {})
    token = sign_in(client, admin)
    assert "Roll back" not in client.get("/training").get_data(as_text=True)

    refused = client.post("/training/models/rollback", data={"csrf_token": token})
    assert refused.status_code == 303 and refused.headers["Location"].endswith("/training#versions")
    page = client.get("/training").get_data(as_text=True)
    assert 'class="flash flash-error"' in page and "no previously active version to roll back to" in page

    client.post(f"/training/models/{v2}/activate", data={"csrf_token": token})
    assert "Roll back to the previous version (v1)" in client.get("/training").get_data(as_text=True)
    client.post("/training/models/rollback", data={"csrf_token": token})
    with session_scope(clean_db) as session:
        assert versions.active_version_id(session) == v1


def test_runs_show_data_sets_tasks_and_methods_by_name(client, world, admin):
    """The runs table and a run's settings showed the keys (ag_news, topic, lora), not the form's words."""
    sign_in(client, admin)
    table = client.get("/training").get_data(as_text=True)
    row = table[table.index(f'href="/training/runs/{world.run_id}">#{world.run_id}<'):]
    row = row[:row.index("</tr>")]
    assert "AG News" in row and "Topic" in row and ">LoRA<" in row and "ag_news" not in row
    settings = client.get(f"/training/runs/{world.run_id}").get_data(as_text=True)
    assert "<strong>AG News</strong>" in settings and "<strong>Topic</strong>" in settings
