"""Scores: ROUGE for summaries, accuracy / macro-F1 for topics, micro / macro / sample F1 for emotions.

Emotion thresholds are tuned per label on the dev split (``tune_thresholds``) and only then applied to test;
nothing here looks at test labels to choose anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
THRESHOLD_GRID = tuple(round(x, 2) for x in np.arange(0.02, 0.96, 0.02))
DEFAULT_THRESHOLD = 0.5


def rouge(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (stemmed); with several references an example scores its best one."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return {name: 0.0 for name in ROUGE_TYPES}
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references, strict=True):
        targets = [reference] if isinstance(reference, str) else list(reference)
        scores = scorer.score_multi(targets, prediction)
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    return {name: totals[name] / len(predictions) for name in ROUGE_TYPES}


def topic_metrics(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    labels = list(labels)
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)),
        "confusion": confusion_matrix(
            gold, predicted, labels=labels
        ).tolist(),  # rows: gold, columns: predicted
        "labels": labels,
        "n": len(gold),
    }


def multi_hot(label_sets: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(label_sets), len(labels)), dtype=np.int64)
    for row, chosen in enumerate(label_sets):
        for label in chosen:
            matrix[row, index[label]] = 1
    return matrix


def emotion_metrics(gold: np.ndarray, scores: np.ndarray, thresholds: Sequence[float]) -> dict[str, Any]:
    """gold: (N, L) 0/1; scores: (N, L) probabilities; thresholds: one per label."""
    predicted = (scores >= np.asarray(thresholds)[None, :]).astype(np.int64)
    return {
        "micro_f1": float(f1_score(gold, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0)),
        "samples_f1": float(f1_score(gold, predicted, average="samples", zero_division=0)),
        "n": int(gold.shape[0]),
    }


def tune_thresholds(
    gold: np.ndarray, scores: np.ndarray, grid: Sequence[float] = THRESHOLD_GRID
) -> list[float]:
    """Per label, the threshold on the grid with the best F1 on these (dev) rows.

    A label with no positive rows keeps the default, since no threshold can be judged on it.
    """
    thresholds = []
    grid_array = np.asarray(grid)[:, None]  # (G, 1)
    for label in range(gold.shape[1]):
        truth = gold[:, label].astype(bool)  # (N,)
        if not truth.any():
            thresholds.append(DEFAULT_THRESHOLD)
            continue
        chosen = scores[None, :, label] >= grid_array  # (G, N)
        true_pos = (chosen & truth).sum(1)
        precision_denominator = chosen.sum(1)
        f1 = 2 * true_pos / np.maximum(precision_denominator + truth.sum(), 1)
        thresholds.append(float(grid[int(np.argmax(f1))]))  # ties: the lowest threshold
    return thresholds
