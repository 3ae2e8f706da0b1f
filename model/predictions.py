"""What the inference pipeline returns for one document: typed, JSON-ready with ``to_dict()``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TopicPrediction:
    label: str  # the most probable topic
    score: float  # its probability
    scores: dict[str, float]  # every topic -> probability (sums to 1)


@dataclass(frozen=True)
class EmotionScore:
    label: str
    score: float  # independent probability of this emotion (sigmoid, or zero-shot yes/no)
    threshold: float  # the per-label threshold from labels.json
    selected: bool  # score >= threshold


@dataclass(frozen=True)
class DocumentPrediction:
    summary: str
    topic: TopicPrediction | None  # None when the model has no topic labels
    emotions: list[EmotionScore]  # one per emotion label, highest score first
    timings: dict[str, float]  # seconds spent on this document per stage (its share of each batch)
    model_version: str
    chunks: int = 1  # encoder inputs the document was split into (long documents: > 1)
    truncated: bool = False  # text beyond the chunk limit was not read
    zero_shot: bool = False  # topic and emotions came from prompting the LM (heads not trained yet)

    @property
    def selected_emotions(self) -> list[str]:
        return [emotion.label for emotion in self.emotions if emotion.selected]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class StageTimer:
    """Accumulates per-document stage times: a batch's time is shared equally by its rows."""

    per_document: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def for_documents(cls, count: int) -> StageTimer:
        return cls([{} for _ in range(count)])

    def charge(self, stage: str, seconds: float, documents: list[int]) -> None:
        if not documents:
            return
        share = seconds / len(documents)
        for doc in documents:
            self.per_document[doc][stage] = self.per_document[doc].get(stage, 0.0) + share
