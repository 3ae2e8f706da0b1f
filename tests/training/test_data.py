"""Data readers, de-duplication and hash splits."""
from __future__ import annotations

import json

import pytest

from model.training.data import (
    DataError,
    Example,
    data_hash,
    deduplicate,
    examples_from_corrections,
    read_examples,
    split_examples,
    split_of,
)


def test_split_is_fixed_by_the_text_alone():
    texts = [f"document number {i} about something" for i in range(2000)]
    first = {t: split_of(t) for t in texts}
    # the same texts, shuffled and mixed with others, land in the same splits
    again = split_examples([Example(text=t, topic="x") for t in reversed(texts + ["another", "more"])])
    for name, rows in again.items():
        for row in rows:
            if row.text in first:
                assert first[row.text] == name
    # whitespace and case do not move a document
    assert split_of("Hello   World\n") == split_of("hello world")
    counts = {name: sum(1 for s in first.values() if s == name) for name in ("train", "dev", "test")}
    assert 1450 < counts["train"] < 1750 and 120 < counts["dev"] < 280 and 120 < counts["test"] < 280
    # pinned: changing the hash scheme would silently move deployed test documents into training
    splits = [split_of(f"pinned {i}") for i in range(40)]
    assert [i for i, s in enumerate(splits) if s == "dev"] == [6, 13, 32]
    assert [i for i, s in enumerate(splits) if s == "test"] == [36, 37]


def test_duplicates_merge_and_later_sources_win():
    rows = [
        Example(text="Same  text", topic="sport", source="bbc"),
        Example(text="same text", emotions=("joy",), source="goemotions"),
        Example(text="SAME TEXT", topic="politics", source="feedback"),
        Example(text="other", topic="tech", source="bbc"),
    ]
    merged = deduplicate(rows)
    assert len(merged) == 2
    first = merged[0]
    assert first.topic == "politics" and first.emotions == ("joy",)
    assert data_hash(merged) == data_hash(list(reversed(merged)))


def test_readers_for_jsonl_csv_and_tsv(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"text": "t1", "summary": "s1", "topic": "sport"}) + "\n\n"
        + json.dumps({"document": "t2", "emotions": ["joy", "love"]}) + "\n"
    )
    (tmp_path / "b.csv").write_text('text,topic,emotions\n"a, quoted",tech,"anger, fear"\nplain,,\n')
    (tmp_path / "c.tsv").write_text("text\tsummary\nx\ty\n")
    jsonl = read_examples(tmp_path / "a.jsonl")
    assert jsonl[0].summary == "s1" and jsonl[0].topic == "sport" and jsonl[0].emotions is None
    assert jsonl[1].emotions == ("joy", "love") and jsonl[1].source == "a"
    csv_rows = read_examples(tmp_path / "b.csv")
    assert len(csv_rows) == 1  # the unlabelled row is skipped
    assert csv_rows[0].text == "a, quoted" and csv_rows[0].emotions == ("anger", "fear")
    assert read_examples(tmp_path / "c.tsv")[0].summary == "y"
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(DataError, match="bad.jsonl:1"):
        read_examples(tmp_path / "bad.jsonl")
    (tmp_path / "nocol.csv").write_text("body,topic\nx,y\n")
    with pytest.raises(DataError, match="text column"):
        read_examples(tmp_path / "nocol.csv")


def test_corrections_become_examples():
    rows = [{"text": "A story", "topic": "sport", "emotions": None, "summary": None},
            {"text": "Another", "topic": None, "emotions": [], "summary": "short"}]
    examples = examples_from_corrections(rows)
    assert examples[0].topic == "sport" and not examples[0].has("emotion")
    assert examples[1].emotions == () and examples[1].has("emotion") and examples[1].summary == "short"
    assert {e.source for e in examples} == {"feedback"}


def test_two_corrections_of_one_corpus_document_name_feedback_once():
    """A BBC article corrected twice was reported as source "bbc+feedback+feedback"."""
    text = "The minister announced a new budget for schools and hospitals today."
    rows = deduplicate([Example(text=text, topic="business", source="bbc"),
                        *examples_from_corrections([{"text": text, "topic": "politics"},
                                                    {"text": text, "emotions": ["approval"]}])])
    assert len(rows) == 1
    assert rows[0].source == "bbc+feedback"
    assert (rows[0].topic, rows[0].emotions) == ("politics", ("approval",))
