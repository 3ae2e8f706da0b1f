"""Topic rows the model's head cannot output: refused, or left out of training, scoring and the comparison
that decides activation alike (a run with AG News on a BBC-headed model was scored on AG rows it could never
get right, and then activated because the old version, re-scored on the same rows, did worse)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from model.artifacts import create_random_artifact
from model.training.data import AG_NEWS_CLASSES, BBC_CATEGORIES, Example
from model.training.evaluation import evaluate
from model.training.run import RunSpecError, fit_to_topic_head, spec_from_params
from tests.training.conftest import TINY_EVAL
from workers.training_job import ActiveInfo, _compare_with_active

AG_ROWS = [Example(text=f"Stocks and world news, item {i}.", topic=AG_NEWS_CLASSES[i % 4], source="ag_news")
           for i in range(12)]


def _splits(extra_test=()):
    bbc = [Example(text=f"Article {i} about a {t} story.", summary="A story.", topic=t, source="bbc")
           for i, t in enumerate(BBC_CATEGORIES * 2)]
    return {"train": [*bbc, *AG_ROWS], "dev": list(bbc[:3]), "test": [*bbc[3:], *extra_test]}


def test_a_data_set_with_no_topic_the_head_has_is_refused_with_the_labels_named():
    spec = spec_from_params({"datasets": ["ag_news", "goemotions", "bbc"], "train": {"mode": "lora"}})
    with pytest.raises(RunSpecError) as refused:
        fit_to_topic_head(spec, _splits(AG_ROWS), BBC_CATEGORIES)
    message = str(refused.value)
    assert "AG News topics (Business, Sci/Tech, Sports, World)" in message
    assert "topic head (business, entertainment, politics, sport, tech)" in message
    # without the topic task AG News is harmless (and useless): nothing to refuse
    spec.train.tasks = ("summary", "emotion")
    assert fit_to_topic_head(spec, _splits(AG_ROWS), BBC_CATEGORIES)[1] == {}


def test_rows_with_topics_the_head_lacks_lose_their_topic_in_every_split():
    spec = spec_from_params({"datasets": ["bbc", "mixed.jsonl"]})
    odd = Example(text="A row with an unknown topic and a summary.", summary="Short.", topic="World",
                  source="mixed")
    splits = _splits([odd])
    splits["train"] = [e for e in splits["train"] if e.source == "bbc"] + [odd]
    fitted, ignored = fit_to_topic_head(spec, splits, BBC_CATEGORIES)
    assert ignored == {"World": 2}
    for rows in fitted.values():
        assert all(e.topic is None or e.topic in BBC_CATEGORIES for e in rows)
    kept = [e for e in fitted["test"] if e.text == odd.text]
    assert kept and kept[0].summary == "Short." and kept[0].topic is None  # still a summary row


def test_evaluation_scores_only_topics_the_head_can_output(tiny_run):
    outcome, _ = tiny_run
    model, tokenizer = outcome.model, outcome.tokenizer
    clean = evaluate(model, tokenizer, outcome.splits["dev"], outcome.splits["test"], tasks=("topic",))
    mixed = evaluate(model, tokenizer, outcome.splits["dev"], outcome.splits["test"] + AG_ROWS, tasks=("topic",))
    assert mixed["topic"]["ignored_rows"] == len(AG_ROWS) and clean["topic"]["ignored_rows"] == 0
    assert mixed["topic"]["labels"] == sorted(model.config.topic_labels)
    for key in ("accuracy", "macro_f1", "confusion", "n"):
        assert mixed["topic"][key] == clean["topic"][key]


def test_activation_compares_only_tasks_whose_heads_have_the_same_labels(tiny_run, tmp_path):
    outcome, _ = tiny_run
    assert set(outcome.model.config.topic_labels) == set(BBC_CATEGORIES)
    folder = create_random_artifact(tmp_path / "active", emotion_labels=("joy", "anger"))
    active = ActiveInfo(1, "v1", str(folder))
    spec = SimpleNamespace(train=SimpleNamespace(tasks=("summary", "topic", "emotion")),
                           eval=spec_from_params({"eval": TINY_EVAL}).eval)  # as in the run
    comparison = _compare_with_active(active, outcome, spec, "cpu")
    assert comparison["compared_tasks"] == ["summary", "topic"] and comparison["labels_differ"] == ["emotion"]
    # the active version also serves emotions, which could not be compared: never replaced by itself
    assert comparison["activated"] is False and comparison["unchecked_tasks"] == ["emotion"]
    assert "also serves emotion, which this run did not compare" in comparison["reason"]

    spec.train.tasks = ("summary", "topic")  # an active version without an emotion head: all it serves compared
    plain = ActiveInfo(1, "v1", str(create_random_artifact(tmp_path / "plain", emotion_labels=())))
    comparison = _compare_with_active(plain, outcome, spec, "cpu")
    assert comparison["unchecked_tasks"] == []
    assert comparison["activated"] == (comparison["candidate_score"] >= comparison["active_score"])

    spec.train.tasks = ("topic",)  # a topic-only run leaves the summaries unchecked
    comparison = _compare_with_active(plain, outcome, spec, "cpu")
    assert comparison["activated"] is False and comparison["unchecked_tasks"] == ["summary"]

    spec.train.tasks = ("emotion",)  # nothing in common: never activated on a score that means something else
    comparison = _compare_with_active(active, outcome, spec, "cpu")
    assert comparison["activated"] is False and "emotion" in comparison["reason"]
