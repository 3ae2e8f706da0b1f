"""Topic calibration: the expected calibration error, the temperature fitted on dev, and where it is used."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import softmax

from model.artifacts import load_artifact, shared_data_dir
from model.training.data import Example
from model.training.evaluation import EvalSettings, evaluate, segment_scores
from model.training.metrics import TEMPERATURE_BOUNDS, calibration, fit_temperature, pool_segments
from model.training.run import initial_model, load_splits, spec_from_params


def test_calibration_error_by_hand():
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    gold = [0, 1, 0, 1]  # right, wrong, right, right
    # 15 bins: each row alone in its bin, gaps |0.9-1|, |0.8-0|, |0.6-1|, |0.7-1|
    fine = calibration(gold, probabilities)
    assert fine["ece"] == pytest.approx((0.1 + 0.8 + 0.4 + 0.3) / 4)
    assert fine["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.2, 0.6, 0.7])))
    assert fine["mean_confidence"] == pytest.approx(0.75)
    # 2 bins: all four in (0.5, 1], mean confidence 0.75 against 3 of 4 right
    assert calibration(gold, probabilities, bins=2)["ece"] == pytest.approx(0.0)


def _sampled(rows: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits, and gold labels drawn from softmax(logits / temperature): the calibrated temperature."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(rows, 4)) * 3.0
    truth = softmax(logits / temperature, axis=1)
    gold = np.array([rng.choice(4, p=p) for p in truth])
    return logits, gold


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_the_fitted_temperature_is_the_one_the_labels_came_from(temperature):
    logits, gold = _sampled(6000, temperature)
    fitted = fit_temperature(logits, gold)
    assert fitted == pytest.approx(temperature, rel=0.1)
    before = calibration(gold, softmax(logits, axis=1))
    after = calibration(gold, softmax(logits / fitted, axis=1))
    assert after["nll"] <= before["nll"] + 1e-9
    if temperature != 1.0:
        assert after["ece"] < before["ece"]


def test_documents_of_several_chunks_are_fitted_as_the_pipeline_pools_them():
    """Two segments per document, averaged with their lengths after the softmax: the fit minimises the
    likelihood of those pooled scores (checked against a fine grid), not of the segments."""
    logits, _ = _sampled(1200, 1.0, seed=1)
    owners = np.repeat(np.arange(600), 2)
    weights = np.tile([3.0, 1.0], 600)
    pooled_truth = pool_segments(softmax(logits / 3.0, axis=1), owners, weights, 600)
    rng = np.random.default_rng(2)
    gold = np.array([rng.choice(4, p=p / p.sum()) for p in pooled_truth])
    fitted = fit_temperature(logits, gold, owners, weights)

    def nll(t: float) -> float:
        pooled = pool_segments(softmax(logits / t, axis=1), owners, weights, 600)
        return -np.log(pooled[np.arange(600), gold]).mean()

    grid = np.exp(np.linspace(np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1]), 2000))
    best = grid[np.argmin([nll(t) for t in grid])]
    assert fitted == pytest.approx(best, rel=0.01)
    assert fit_temperature(logits, gold) != pytest.approx(fitted, rel=0.01)  # segments alone fit otherwise


def test_without_rows_or_without_a_better_fit_the_temperature_stays_one():
    assert fit_temperature(np.zeros((0, 3)), []) == 1.0
    # every logit equal: no temperature changes the likelihood
    assert fit_temperature(np.zeros((10, 3)), [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]) == 1.0


def test_topic_temperature_is_fitted_on_dev_and_only_applied_to_test(tiny_params):
    spec = spec_from_params(tiny_params)
    splits = load_splits(spec, shared_data_dir())
    model, tokenizer, _ = initial_model(spec, splits["train"], shared_data_dir())
    model.eval()
    labels = model.config.topic_labels
    dev = [Example(text=f"a report on item {i} and its market", topic=labels[i % 2]) for i in range(40)]
    test = [Example(text=f"news story {i} from the league", topic=labels[(i * 7) % len(labels)]) for i in range(40)]
    settings = EvalSettings(max_input_length=48)
    metrics = evaluate(model, tokenizer, dev, test, settings, tasks=("topic",))

    def fitted(rows):
        scores = segment_scores(model, tokenizer, [e.text for e in rows], settings)
        return fit_temperature(scores.topic_logits, [labels.index(e.topic) for e in rows], scores.owners,
                               scores.weights)

    from_dev, from_test = fitted(dev), fitted(test)
    assert metrics["topic_temperature"] == from_dev
    assert from_dev != pytest.approx(from_test)  # the check would be vacuous otherwise
    report = metrics["topic"]["calibration"]
    assert report["temperature"] == round(from_dev, 4) and report["dev_rows"] == 40
    scores = segment_scores(model, tokenizer, [e.text for e in test], settings)
    gold = [labels.index(e.topic) for e in test]
    assert report["after"] == calibration(gold, scores.topics(from_dev))
    assert report["before"] == calibration(gold, scores.topics(1.0))


def test_a_trained_version_carries_its_temperature(tiny_run):
    outcome, _ = tiny_run
    artifact = load_artifact(outcome.folder)
    report = outcome.metrics["test"]["topic"]["calibration"]
    assert artifact.labels["topic_temperature"] == pytest.approx(report["temperature"], abs=1e-4)
    assert "topic_temperature" not in outcome.metrics["test"]  # it lives in labels.json, not among the scores
    # a handful of dev rows may fit a temperature that does not help test: only that both are reported
    assert all(math.isfinite(report[when][key]) for when in ("before", "after") for key in ("ece", "nll"))
