"""Training examples: readers for JSONL/CSV/TSV, the local corpora, corrections, de-duplication and splits.

An ``Example`` carries a text and whichever labels its source has: a summary, a topic, emotions. A field
left ``None`` means "not labelled for that task" (an empty emotion tuple means "labelled: no emotion").
Splits are fixed by a hash of the normalised text, so a document lands in the same split on every run, on
every machine, whatever else is in the data set; a duplicate is merged before splitting and can never sit
on both sides.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
SPLIT_SALT = "leximind-split-v1"  # changing it reshuffles every split: never do it for a deployed model
TEXT_FIELDS = ("text", "document", "article", "dialogue", "content")
SUMMARY_FIELDS = ("summary", "highlights", "target")
TOPIC_FIELDS = ("topic", "category", "label")
EMOTION_FIELDS = ("emotions", "emotion")


class DataError(ValueError):
    """A data file that cannot be read as training examples; the message says which file and row."""


@dataclass(frozen=True)
class Example:
    text: str
    summary: str | None = None
    topic: str | None = None
    emotions: tuple[str, ...] | None = None
    source: str = ""  # the corpus or file it came from
    references: tuple[str, ...] = ()  # every reference summary, for multi-reference ROUGE
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def has(self, task: str) -> bool:
        return {"summary": self.summary, "topic": self.topic, "emotion": self.emotions}[task] is not None

    @property
    def key(self) -> str:
        return text_key(self.text)


# ------------------------------------------------------------------------------------------ text keys
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def text_key(text: str) -> str:
    """sha256 of the whitespace-normalised, case-folded text: the identity used for de-dup and splits."""
    return hashlib.sha256(normalize_text(text).casefold().encode("utf-8")).hexdigest()


def split_of(text: str, fractions: Sequence[float] = DEFAULT_FRACTIONS, salt: str = SPLIT_SALT) -> str:
    """ "train", "dev" or "test", decided by the text alone."""
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    digest = hashlib.sha256(f"{salt}:{text_key(text)}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    if point < fractions[0]:
        return "train"
    return "dev" if point < fractions[0] + fractions[1] else "test"


def split_examples(
    examples: Iterable[Example], fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, list[Example]]:
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for example in examples:
        splits[split_of(example.text, fractions)].append(example)
    return splits


def deduplicate(examples: Iterable[Example]) -> list[Example]:
    """One example per text; labels merge field by field and a later source wins (corrections come last)."""
    merged: dict[str, Example] = {}
    dropped = 0
    for example in examples:
        key = example.key
        previous = merged.get(key)
        if previous is None:
            merged[key] = example
            continue
        dropped += 1
        merged[key] = replace(
            previous,
            summary=example.summary if example.summary is not None else previous.summary,
            topic=example.topic if example.topic is not None else previous.topic,
            emotions=example.emotions if example.emotions is not None else previous.emotions,
            references=example.references or previous.references,
            source=_joined_sources(previous.source, example.source),
        )
    if dropped:
        log.info("de-duplication merged %d examples into others (%d remain)", dropped, len(merged))
    return list(merged.values())


def _joined_sources(previous: str, new: str) -> str:
    """"bbc" + "feedback" -> "bbc+feedback"; a source already named (two corrections of one document) is not
    added again."""
    parts = previous.split("+")
    return previous if new in parts else f"{previous}+{new}"


def data_hash(examples: Sequence[Example]) -> str:
    """A fingerprint of a data set (texts and labels, order-independent) for the artifact manifest."""
    digest = hashlib.sha256()
    for row in sorted(
        json.dumps([e.key, e.summary, e.topic, list(e.emotions) if e.emotions is not None else None])
        for e in examples
    ):
        digest.update(row.encode())
    return digest.hexdigest()


def describe(examples: Sequence[Example]) -> dict[str, Any]:
    """Counts per task and per source, for logs and metrics.json."""
    return {
        "examples": len(examples),
        "summary": sum(e.summary is not None for e in examples),
        "topic": sum(e.topic is not None for e in examples),
        "emotion": sum(e.emotions is not None for e in examples),
        "sources": dict(Counter(e.source for e in examples)),
    }


# ------------------------------------------------------------------------------------- generic readers
def read_examples(path: str | Path, *, source: str | None = None) -> list[Example]:
    """Read a .jsonl, .csv or .tsv file whose columns are named text, summary, topic, emotions."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows: Iterator[dict[str, Any]] = _jsonl_rows(path)
    elif suffix in (".csv", ".tsv"):
        rows = _delimited_rows(path, "\t" if suffix == ".tsv" else ",")
    else:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .csv or .tsv")
    examples = []
    for number, row in enumerate(rows, start=1):
        example = example_from_row(row, source=source or path.stem, where=f"{path}:{number}")
        if example is not None:
            examples.append(example)
    if not examples:
        raise DataError(f"{path}: no rows with a text and at least one label")
    return examples


def example_from_row(row: dict[str, Any], *, source: str, where: str = "") -> Example | None:
    """An Example from a dict with text/summary/topic/emotions fields (common aliases accepted)."""
    text = _first(row, TEXT_FIELDS)
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: no text (looked for {', '.join(TEXT_FIELDS)})")
    summary = _first(row, SUMMARY_FIELDS)
    topic = _first(row, TOPIC_FIELDS)
    emotions = _first(row, EMOTION_FIELDS)
    if isinstance(emotions, str):  # a CSV cell: empty means "not labelled"
        emotions = [part.strip() for part in re.split(r"[,;|]", emotions) if part.strip()] or None
    if emotions is not None and not isinstance(emotions, list | tuple):
        raise DataError(f"{where}: emotions must be a list or a comma-separated string, got {emotions!r}")
    if summary in ("", None) and topic in ("", None) and emotions is None:
        return None
    references = row.get("references")
    return Example(
        text=text.strip(),
        summary=summary.strip() if isinstance(summary, str) and summary.strip() else None,
        topic=str(topic).strip() if topic not in ("", None) else None,
        emotions=tuple(str(e) for e in emotions) if emotions is not None else None,
        source=source,
        references=tuple(references) if isinstance(references, list) else (),
    )


def _first(row: dict[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    return None


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: each line must be a JSON object")
            yield row


def _delimited_rows(path: Path, delimiter: str) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if not reader.fieldnames or not set(reader.fieldnames) & set(TEXT_FIELDS):
            raise DataError(f"{path}: the header must name a text column (one of {', '.join(TEXT_FIELDS)})")
        yield from reader


# ------------------------------------------------------------------------------------- local corpora
BBC_CATEGORIES = ("business", "entertainment", "politics", "sport", "tech")
AG_NEWS_CLASSES = ("World", "Sports", "Business", "Sci/Tech")
# the BBC summaries join sentences with no space after the full stop ("...rise.The bank..."): restore it
_GLUED_SENTENCE = re.compile(r"(?<=[a-z0-9%)\"'])\.(?=[A-Z\"])")


def load_bbc(root: Path) -> list[Example]:
    """BBC News: full article, extractive summary and one of five categories."""
    examples = []
    for category in BBC_CATEGORIES:
        for row in _jsonl_rows(root / "summarization" / "bbc_news_summary" / f"{category}.jsonl"):
            summary = _GLUED_SENTENCE.sub(". ", row["summary"])
            examples.append(
                Example(
                    text=row["text"],
                    summary=summary,
                    topic=row["category"],
                    source="bbc",
                    references=(summary,),
                    meta={"id": row["id"]},
                )
            )
    return examples


def load_goemotions(root: Path) -> list[Example]:
    """GoEmotions: Reddit comments with 0..n of 27 emotions or neutral (official files pooled; see splits)."""
    labels = [
        line.strip() for line in (root / "emotion" / "emotions.txt").read_text().splitlines() if line.strip()
    ]
    examples = []
    for name in SPLITS:
        path = root / "emotion" / f"{name}.tsv"
        with open(path, encoding="utf-8", newline="") as handle:
            for number, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
                if len(row) != 3:
                    raise DataError(f"{path}:{number}: expected 3 tab-separated columns, got {len(row)}")
                ids = [int(i) for i in row[1].split(",") if i]
                examples.append(
                    Example(
                        text=row[0],
                        emotions=tuple(labels[i] for i in ids),
                        source="goemotions",
                        meta={"id": row[2], "official_split": name},
                    )
                )
    return examples


def load_ag_news(root: Path) -> list[Example]:
    """AG News (the 7,600-row official test file): title + description, four classes."""
    path = root / "topic" / "ag_news" / "test.csv"
    examples = []
    with open(path, encoding="utf-8", newline="") as handle:
        for label, title, description in csv.reader(handle):
            text = f"{title}. {description.replace(chr(92), ' ')}"
            examples.append(Example(text=text, topic=AG_NEWS_CLASSES[int(label) - 1], source="ag_news"))
    return examples


def load_unified_summaries(root: Path, name: str) -> list[Example]:
    """SciTLDR-A or DialogSum from the unified JSONL views (all of their files pooled)."""
    folder = root / "summarization" / "unified"
    examples = []
    for path in sorted(folder.glob(f"{name}.*.jsonl")):
        for row in _jsonl_rows(path):
            references = tuple(row.get("references") or [row["summary"]])
            examples.append(
                Example(text=row["text"], summary=row["summary"], source=name, references=references)
            )
    if not examples:
        raise DataError(f"no {name}.*.jsonl files under {folder}")
    return examples


CORPORA = {
    "bbc": load_bbc,
    "goemotions": load_goemotions,
    "ag_news": load_ag_news,
    "scitldr": lambda root: load_unified_summaries(root, "scitldr_a"),
    "dialogsum": lambda root: load_unified_summaries(root, "dialogsum"),
}


def load_corpus(name: str, root: str | Path) -> list[Example]:
    if name not in CORPORA:
        raise DataError(
            f"unknown corpus {name!r}; known: {sorted(CORPORA)} (or give a .jsonl/.csv/.tsv path)"
        )
    return CORPORA[name](Path(root))


def load_datasets(names: Sequence[str], root: str | Path) -> list[Example]:
    """Corpora by name and files by path, in order (later sources win when texts repeat)."""
    examples: list[Example] = []
    for name in names:
        if name in CORPORA:
            examples.extend(load_corpus(name, root))
        elif Path(name).suffix:
            examples.extend(read_examples(name))
        else:
            raise DataError(f"unknown data set {name!r}; known corpora: {sorted(CORPORA)}, or a file path")
    return examples


def examples_from_corrections(rows: Iterable[dict[str, Any]]) -> list[Example]:
    """Corrections (from the feedback table) as examples: {"text", "topic", "emotions", "summary"}."""
    examples = []
    for row in rows:
        emotions = row.get("emotions")
        examples.append(
            Example(
                text=row["text"],
                summary=row.get("summary") or None,
                topic=row.get("topic") or None,
                emotions=tuple(emotions) if emotions is not None else None,
                source="feedback",
            )
        )
    return examples
