"""Evaluating a model on held-out examples: topic, emotion (thresholds tuned on dev) and summary scores.

``evaluate`` never chooses anything on test: emotion thresholds and the topic temperature come from the dev
rows and are then applied unchanged to the test rows. ``held_out_score`` folds the per-task numbers into the
one figure used to decide whether a new version may replace the active one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import softmax

from model.multitask import MultiTaskModel
from model.training.batching import encoder_inputs, group_by_length
from model.training.data import Example
from model.training.metrics import (
    calibration,
    emotion_metrics,
    fit_temperature,
    multi_hot,
    pool_segments,
    rouge,
    topic_metrics,
    tune_thresholds,
)

log = logging.getLogger(__name__)


@dataclass
class EvalSettings:
    max_input_length: int = 512
    input_prefix: str = "summarize: "  # as in training and in the inference pipeline
    batch_size: int = 32
    max_tokens_per_batch: int = 16384
    max_chunks: int = 8  # a long document is read in chunks and its label probabilities averaged, as in
    # model.pipeline (PipelineConfig.max_chunks); summaries are written from the first chunk
    max_summary_examples: int = 200  # generation is the slow part; the first N labelled test rows
    max_new_tokens: int = 128
    num_beams: int = 1
    no_repeat_ngram_size: int = 3


@dataclass
class SegmentScores:
    """The heads' outputs per encoder segment (a long document is read in several), with the document each
    segment belongs to and its weight (its length) for pooling, as the inference pipeline pools chunks."""

    topic_logits: np.ndarray | None  # (S, K)
    emotion: np.ndarray | None  # (S, L) sigmoid probabilities
    owners: np.ndarray  # (S,) document index
    weights: np.ndarray  # (S,)
    documents: int

    def topics(self, temperature: float = 1.0) -> np.ndarray | None:
        """(N, K) topic probabilities per document: softmax(logits / temperature), pooled over segments."""
        if self.topic_logits is None:
            return None
        per_segment = softmax(self.topic_logits.astype(np.float64) / temperature, axis=1)
        return pool_segments(per_segment, self.owners, self.weights, self.documents).astype(np.float32)

    def emotions(self) -> np.ndarray | None:
        if self.emotion is None:
            return None
        return pool_segments(self.emotion, self.owners, self.weights, self.documents).astype(np.float32)


@torch.no_grad()
def segment_scores(model: MultiTaskModel, tokenizer: Any, texts: Sequence[str], settings: EvalSettings) -> SegmentScores:
    """Topic logits and emotion probabilities of every encoder segment of these texts.

    A document longer than one encoder input is split as the inference pipeline splits it."""
    model.eval()
    device = next(model.parameters()).device
    inputs = encoder_inputs(tokenizer, texts, settings.max_input_length, settings.input_prefix,
                            settings.max_chunks)
    segments = [chunk for chunks in inputs for chunk in chunks]
    topics = np.zeros((len(segments), len(model.config.topic_labels)), dtype=np.float32)
    emotions = np.zeros((len(segments), len(model.config.emotion_labels)))
    for group in group_by_length(range(len(segments)), [len(s) for s in segments], settings.batch_size,
                                 settings.max_tokens_per_batch):
        input_ids, mask = _pad([segments[i] for i in group], model.config.pad_token_id, device)
        output = model.classify(model.encode(input_ids, mask), mask)
        if output.topic_logits is not None:
            topics[group] = output.topic_logits.float().cpu().numpy()
        if output.emotion_logits is not None:
            emotions[group] = output.emotion_probabilities().cpu().numpy()
    return SegmentScores(
        topic_logits=topics if model.topic_head is not None else None,
        emotion=emotions if model.emotion_head is not None else None,
        owners=np.repeat(np.arange(len(texts)), [len(chunks) for chunks in inputs]),
        weights=np.array([len(chunk) for chunk in segments], dtype=np.float64),
        documents=len(texts),
    )


def class_scores(
    model: MultiTaskModel, tokenizer: Any, texts: Sequence[str], settings: EvalSettings,
    topic_temperature: float = 1.0,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(topic probabilities (N, K) | None, emotion probabilities (N, L) | None), in input order; a long
    document's chunks are averaged with chunk lengths as weights (as the pipeline does)."""
    scores = segment_scores(model, tokenizer, texts, settings)
    return scores.topics(topic_temperature), scores.emotions()


@torch.no_grad()
def summarize(model: MultiTaskModel, tokenizer: Any, texts: Sequence[str], settings: EvalSettings) -> list[str]:
    model.eval()
    device = next(model.parameters()).device
    ids = [chunks[0] for chunks in encoder_inputs(tokenizer, texts, settings.max_input_length,
                                                   settings.input_prefix, max_chunks=1)]
    summaries: list[str] = [""] * len(texts)
    for group in group_by_length(range(len(ids)), [len(s) for s in ids], settings.batch_size,
                                 settings.max_tokens_per_batch):
        input_ids, mask = _pad([ids[i] for i in group], model.config.pad_token_id, device)
        generated = model.generate(input_ids, mask, max_new_tokens=settings.max_new_tokens,
                                   num_beams=settings.num_beams, no_repeat_ngram_size=settings.no_repeat_ngram_size)
        for index, text in zip(group, tokenizer.batch_decode(generated), strict=True):
            summaries[index] = text
    return summaries


def evaluate(
    model: MultiTaskModel,
    tokenizer: Any,
    dev: Sequence[Example],
    test: Sequence[Example],
    settings: EvalSettings | None = None,
    tasks: Sequence[str] = ("summary", "topic", "emotion"),
) -> dict[str, Any]:
    """Scores on `test`; emotion thresholds tuned and the topic temperature fitted on `dev`. Returns {"topic":
    ..., "emotion": ..., "summary": ..., "emotion_thresholds": {label: t}, "topic_temperature": T} for the tasks
    the model has heads and labelled rows for."""
    settings = settings or EvalSettings()
    config = model.config
    results: dict[str, Any] = {}
    if "topic" in tasks and model.topic_head is not None:
        # the rows training uses (batching.encode_rows): a topic the head cannot output is not scored
        head = set(config.topic_labels)
        rows = [e for e in test if e.topic in head]
        ignored = sum(e.topic is not None and e.topic not in head for e in test)
        if ignored:
            log.warning("topic: %d test rows have labels the model has no head output for; not scored", ignored)
        if rows:
            # the temperature is fitted on dev, then applied unchanged to test (as thresholds are)
            dev_rows = [e for e in dev if e.topic in head]
            temperature = 1.0
            if dev_rows:
                fitting = segment_scores(model, tokenizer, [e.text for e in dev_rows], settings)
                temperature = fit_temperature(fitting.topic_logits, _topic_indices(dev_rows, config.topic_labels),
                                              fitting.owners, fitting.weights)
            scores = segment_scores(model, tokenizer, [e.text for e in rows], settings)
            probabilities = scores.topics(temperature)
            predicted = [config.topic_labels[i] for i in probabilities.argmax(1)]
            gold = _topic_indices(rows, config.topic_labels)
            results["topic"] = {
                **topic_metrics([e.topic for e in rows], predicted, sorted(head)), "ignored_rows": ignored,
                "calibration": {"temperature": round(temperature, 4), "dev_rows": len(dev_rows),
                                "before": calibration(gold, scores.topics(1.0)),
                                "after": calibration(gold, probabilities)},
            }
            results["topic_temperature"] = temperature
    if "emotion" in tasks and model.emotion_head is not None:
        dev_rows = [e for e in dev if e.emotions is not None]
        test_rows = [e for e in test if e.emotions is not None]
        if test_rows:
            labels = config.emotion_labels
            if dev_rows:
                _, dev_scores = class_scores(model, tokenizer, [e.text for e in dev_rows], settings)
                thresholds = tune_thresholds(_gold(dev_rows, labels), dev_scores)
            else:
                log.warning("no dev rows with emotions: thresholds stay at 0.5")
                thresholds = [0.5] * len(labels)
            _, test_scores = class_scores(model, tokenizer, [e.text for e in test_rows], settings)
            results["emotion"] = emotion_metrics(_gold(test_rows, labels), test_scores, thresholds)
            results["emotion_thresholds"] = dict(zip(labels, thresholds, strict=True))
    if "summary" in tasks:
        rows = [e for e in test if e.summary is not None][: settings.max_summary_examples]
        if rows:
            predictions = summarize(model, tokenizer, [e.text for e in rows], settings)
            results["summary"] = {**rouge(predictions, [e.references or (e.summary,) for e in rows]),
                                  "n": len(rows), "examples": predictions[:3]}
    return results


def comparable_tasks(candidate: MultiTaskModel, other: MultiTaskModel, tasks: Sequence[str]) -> list[str]:
    """The tasks whose scores mean the same for both models: a classification task only where both heads have
    the same labels (otherwise each is scored on other rows, over other classes)."""
    same = {"summary": True,
            "topic": set(candidate.config.topic_labels) == set(other.config.topic_labels),
            "emotion": set(candidate.config.emotion_labels) == set(other.config.emotion_labels)}
    return [task for task in tasks if same[task]]


def held_out_score(metrics: dict[str, Any], tasks: Sequence[str] | None = None) -> float | None:
    """The mean of topic macro-F1, emotion micro-F1 and ROUGE-L over the tasks present (and in `tasks`)."""
    parts = {
        "topic": metrics.get("topic", {}).get("macro_f1"),
        "emotion": metrics.get("emotion", {}).get("micro_f1"),
        "summary": metrics.get("summary", {}).get("rougeL"),
    }
    values = [v for task, v in parts.items() if v is not None and (tasks is None or task in tasks)]
    return sum(values) / len(values) if values else None


def _topic_indices(rows: Sequence[Example], labels: Sequence[str]) -> list[int]:
    index = {label: i for i, label in enumerate(labels)}
    return [index[e.topic] for e in rows]


def _gold(rows: Sequence[Example], labels: Sequence[str]) -> np.ndarray:
    known = set(labels)
    return multi_hot([[label for label in e.emotions if label in known] for e in rows], labels)


def _pad(seqs: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)
