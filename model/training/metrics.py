"""Scores: ROUGE for summaries, accuracy / macro-F1 / calibration for topics, micro / macro / sample F1 for
emotions.

Emotion thresholds are tuned per label on the dev split (``tune_thresholds``) and the topic temperature is
fitted on it (``fit_temperature``); only then are they applied to test. Nothing here looks at test labels to
choose anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rouge_score import rouge_scorer
from scipy.optimize import minimize_scalar
from scipy.special import softmax
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
THRESHOLD_GRID = tuple(round(x, 2) for x in np.arange(0.02, 0.96, 0.02))
DEFAULT_THRESHOLD = 0.5
CALIBRATION_BINS = 15
TEMPERATURE_BOUNDS = (0.05, 20.0)  # a fitted temperature outside this says the dev rows are degenerate


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


def calibration(gold: Sequence[int], probabilities: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, float]:
    """How far the topic score is from the chance of being right: expected calibration error (the gap
    between confidence and accuracy, averaged over equal-width confidence bins weighted by their rows),
    negative log-likelihood of the gold label, and the mean confidence. gold: (N,) label indices;
    probabilities: (N, K) rows summing to 1."""
    gold_index = np.asarray(gold, dtype=np.int64)
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == gold_index
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        rows = which == b
        if rows.any():
            gap += rows.sum() * abs(confidence[rows].mean() - correct[rows].mean())
    return {
        "ece": float(gap / max(len(gold_index), 1)),
        "nll": _nll(probabilities, gold_index) if len(gold_index) else 0.0,
        "mean_confidence": float(confidence.mean()) if len(gold_index) else 0.0,
    }


def _nll(probabilities: np.ndarray, gold_index: np.ndarray) -> float:
    """Mean negative log-likelihood of the gold labels."""
    return float(-np.log(np.clip(probabilities[np.arange(len(gold_index)), gold_index], 1e-12, None)).mean())


def fit_temperature(logits: np.ndarray, gold: Sequence[int], owners: np.ndarray | None = None,
                    weights: np.ndarray | None = None) -> float:
    """The temperature T that makes softmax(logits / T) most likely on these (dev) rows: the one-parameter
    recalibration of Guo et al. (2017), which leaves each segment's argmax unchanged.

    logits: (S, K) per encoder segment; a document read in several chunks has several segments, named by
    ``owners`` (S,) and averaged with ``weights`` (S,) after the softmax, as the pipeline pools them.
    gold: (N,) label index per document."""
    gold_index = np.asarray(gold, dtype=np.int64)
    if len(gold_index) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        per_segment = softmax(logits / np.exp(log_t), axis=1)
        return _nll(pool_segments(per_segment, owners, weights, len(gold_index)), gold_index)

    low, high = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    best = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(best.x)) if nll(best.x) < nll(0.0) else 1.0


def pool_segments(per_segment: np.ndarray, owners: np.ndarray | None, weights: np.ndarray | None,
                  documents: int) -> np.ndarray:
    """(S, K) per-segment scores -> (documents, K): each document's segments averaged with their weights
    (chunk lengths), as the inference pipeline pools a long document's chunks."""
    if owners is None:
        return per_segment
    weights = np.ones(len(owners)) if weights is None else weights
    sums = np.zeros((documents, per_segment.shape[1]))
    np.add.at(sums, owners, per_segment * weights[:, None])
    return sums / np.bincount(owners, weights=weights, minlength=documents)[:, None]
