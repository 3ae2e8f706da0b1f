"""Stand-ins for the model pipeline: same ``.run(texts)`` / ``.version`` interface, scripted failures."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

POISON = "<<poison>>"


@dataclass(frozen=True)
class FakeTopic:
    label: str
    score: float
    scores: dict[str, float]


@dataclass(frozen=True)
class FakeEmotion:
    label: str
    score: float
    threshold: float
    selected: bool


@dataclass
class FakePrediction:
    """Shaped like ``model.predictions.DocumentPrediction`` (the attributes the worker reads)."""

    summary: str
    topic: FakeTopic = field(default_factory=lambda: FakeTopic("tech", 0.9, {"tech": 0.9, "sport": 0.1}))
    emotions: list[FakeEmotion] = field(
        default_factory=lambda: [FakeEmotion("joy", 0.2, 0.5, False), FakeEmotion("neutral", 0.8, 0.5, True)]
    )
    timings: dict[str, float] = field(default_factory=lambda: {"total_s": 0.001})
    model_version: str = "fake"


@dataclass
class FakePredictor:
    """Summarises a text as its first words; raises on POISON, or whatever ``fail`` says to raise."""

    version: str = "fake"
    delay_s: float = 0.0
    fail: Callable[[list[str]], BaseException | None] | None = None
    before_run: Callable[[list[str]], None] | None = None
    calls: list[int] = field(default_factory=list)

    def run(self, texts: list[str]) -> list[FakePrediction]:
        self.calls.append(len(texts))
        if self.before_run is not None:
            self.before_run(texts)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail is not None and (error := self.fail(texts)) is not None:
            raise error
        if any(POISON in t for t in texts):
            raise ValueError("the tokenizer choked on this input")
        return [FakePrediction(summary=f"{self.version}: " + " ".join(t.split()[:5])) for t in texts]
