"""POST /api/v1/training-runs: the documented params shape is honoured, unknown fields are refused by name,
and a dataset whose topics the active model's head lacks is refused up front."""
from __future__ import annotations

import json

import pytest

from db.session import session_scope
from db.versions import register_version
from model.training.data import AG_NEWS_CLASSES, BBC_CATEGORIES
from webapp.training_params import DATASET_TOPICS, ParamError, parse_training_request


def test_the_web_app_s_topic_lists_are_the_corpora_s():
    assert DATASET_TOPICS == {"ag_news": AG_NEWS_CLASSES, "bbc": BBC_CATEGORIES}


def test_the_params_shape_means_what_it_says_and_unknown_fields_are_named():
    params = parse_training_request({"datasets": ["bbc"], "train": {"tasks": ["topic"], "mode": "full"}})
    assert params["train"]["tasks"] == ["topic"] and params["train"]["mode"] == "full"
    assert params["train"]["learning_rate"] == 1e-4
    assert parse_training_request(params) == params  # what GET returns starts the same run again
    for body, words in [({"datasets": ["bbc"], "taks": ["topic"]}, "Unknown field(s): taks"),
                        ({"train": {"tasks": ["topic"], "max_steps": 5}}, "Unknown field(s) in train: max_steps"),
                        ({"tasks": ["summary"], "train": {"tasks": ["topic"]}}, "train.tasks and tasks"),
                        ({"recipe": "starter"}, 'recipe must be "finetune"'),
                        ({"train": ["topic"]}, "train must be an object")]:
        with pytest.raises(ParamError, match=words.replace("(", r"\(").replace(")", r"\)")):
            parse_training_request(body)


def test_api_honours_the_documented_shape_and_refuses_a_topic_head_mismatch(client, admin, clean_db, tmp_path):
    posted = client.post("/api/v1/training-runs", headers=admin.bearer,
                         json={"datasets": ["bbc"], "train": {"tasks": ["topic"], "mode": "lora"}})
    assert posted.status_code == 202, posted.get_json()
    assert posted.get_json()["params"]["train"]["tasks"] == ["topic"]
    client.post(f"/api/v1/training-runs/{posted.get_json()['id']}/cancel", headers=admin.bearer)
    unknown = client.post("/api/v1/training-runs", headers=admin.bearer, json={"datasets": ["bbc"], "task": ["x"]})
    assert unknown.status_code == 400 and "task" in unknown.get_json()["error"]["message"]

    folder = tmp_path / "v1"
    folder.mkdir()
    (folder / "labels.json").write_text(json.dumps({"topic": list(BBC_CATEGORIES), "emotion": []}))
    with session_scope(clean_db) as session:
        register_version(session, path=str(folder), source="trained", name="v1", activate=True)
    refused = client.post("/api/v1/training-runs", headers=admin.bearer,
                          json={"datasets": ["ag_news", "goemotions", "bbc"], "method": "lora", "epochs": 1})
    message = refused.get_json()["error"]["message"]
    assert refused.status_code == 400
    assert "AG News topics (World, Sports, Business, Sci/Tech) do not match the active model v1's topic head " \
           "(business, entertainment, politics, sport, tech)" in message
    without_topic = client.post("/api/v1/training-runs", headers=admin.bearer,
                                json={"datasets": ["ag_news", "goemotions", "bbc"], "tasks": ["summary", "emotion"]})
    assert without_topic.status_code == 202, without_topic.get_json()

    client.post(f"/api/v1/training-runs/{without_topic.get_json()['id']}/cancel", headers=admin.bearer)
    spec = client.get("/api/v1/openapi.json", headers=admin.bearer).get_json()
    schema = spec["components"]["schemas"]["TrainingRequest"]
    assert schema["additionalProperties"] is False and set(schema["properties"]["train"]["properties"]) == {
        "tasks", "learning_rate", "mode"}


def test_a_missing_or_unknown_choice_lists_the_choices_by_name_and_key():
    with pytest.raises(ParamError) as missing:
        parse_training_request({"datasets": [], "tasks": ["topic"]})
    assert str(missing.value).startswith("Choose at least one of the datasets: AG News — topic (ag_news), ")
    with pytest.raises(ParamError) as unknown:
        parse_training_request({"datasets": ["bbc"], "tasks": ["topics"]})
    assert str(unknown.value) == ("Unknown tasks: topics; choose from Summary (summary), Topic (topic), "
                                  "Emotions (emotion).")


def test_the_web_app_s_task_lists_are_what_the_corpora_label():
    from model.artifacts import shared_data_dir
    from model.training.data import CORPORA, load_corpus
    from webapp.training_params import DATASET_TASKS

    assert set(DATASET_TASKS) == set(CORPORA)
    for name in CORPORA:
        rows = load_corpus(name, shared_data_dir())
        labelled = {task for task, field in (("topic", "topic"), ("emotion", "emotions"), ("summary", "summary"))
                    if any(getattr(e, field) for e in rows)}
        assert labelled == set(DATASET_TASKS[name]), name


def test_a_task_no_chosen_data_set_labels_is_refused_unless_corrections_have_it():
    from webapp.training_params import check_tasks_have_examples

    params = parse_training_request({"datasets": ["goemotions"], "tasks": ["summary"]})
    with pytest.raises(ParamError) as refused:
        check_tasks_have_examples(params, set())
    assert str(refused.value) == ("No chosen data set has examples for Summary (Summary: BBC News, SciTLDR, "
                                  "DialogSum have them). Add one of those data sets, or untick the task.")
    check_tasks_have_examples(params, {"summary"})  # corrections of summaries are examples too
    without = parse_training_request({"datasets": ["goemotions"], "tasks": ["summary"], "include_corrections": False})
    with pytest.raises(ParamError):
        check_tasks_have_examples(without, {"summary"})
    check_tasks_have_examples(parse_training_request({}), set())  # the defaults: every data set, every task


def test_the_api_refuses_a_run_that_could_not_train(client, admin, clean_db):
    response = client.post("/api/v1/training-runs", headers=admin.bearer,
                           json={"datasets": ["goemotions"], "tasks": ["summary", "emotion"]})
    assert response.status_code == 400
    assert response.get_json()["error"]["message"].startswith("No chosen data set has examples for Summary")
