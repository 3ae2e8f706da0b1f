"""Baselines on the same splits as the model, so every number has something beside it.

Topic and emotion: TF-IDF + logistic regression (emotion thresholds tuned on dev, like the model's).
Summaries: lead-3, the first three sentences of the document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from model.training.data import Example
from model.training.metrics import emotion_metrics, multi_hot, rouge, topic_metrics, tune_thresholds

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def sentences(text: str) -> list[str]:
    parts = []
    for paragraph in text.split("\n"):
        parts.extend(piece.strip() for piece in _SENTENCE_END.split(paragraph) if piece.strip())
    return parts


def lead_n(text: str, n: int = 3) -> str:
    return " ".join(sentences(text)[:n])


def lead3_baseline(test: Sequence[Example]) -> dict[str, float]:
    rows = [e for e in test if e.summary is not None]
    return rouge([lead_n(e.text) for e in rows], [e.references or (e.summary,) for e in rows])


def _vectorizer() -> TfidfVectorizer:
    return TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, max_features=200_000)


def tfidf_topic_baseline(
    train: Sequence[Example], test: Sequence[Example], labels: Sequence[str]
) -> dict[str, Any]:
    train = [e for e in train if e.topic is not None]
    test = [e for e in test if e.topic is not None]
    vectorizer = _vectorizer()
    features = vectorizer.fit_transform([e.text for e in train])
    classifier = LogisticRegression(C=10.0, max_iter=2000)
    classifier.fit(features, [e.topic for e in train])
    predicted = classifier.predict(vectorizer.transform([e.text for e in test]))
    return topic_metrics([e.topic for e in test], list(predicted), labels)


def tfidf_emotion_baseline(
    train: Sequence[Example], dev: Sequence[Example], test: Sequence[Example], labels: Sequence[str]
) -> dict[str, Any]:
    """One logistic regression per label; thresholds tuned on dev, scores reported on test."""
    train, dev, test = ([e for e in rows if e.emotions is not None] for rows in (train, dev, test))
    vectorizer = _vectorizer()
    x_train = vectorizer.fit_transform([e.text for e in train])
    y_train = multi_hot([e.emotions for e in train], labels)
    x_dev, x_test = (vectorizer.transform([e.text for e in rows]) for rows in (dev, test))
    dev_scores = np.zeros((x_dev.shape[0], len(labels)))
    test_scores = np.zeros((x_test.shape[0], len(labels)))
    for column in range(len(labels)):
        if y_train[:, column].min() == y_train[:, column].max():
            continue  # a label never (or always) seen in train: its scores stay 0
        classifier = LogisticRegression(C=4.0, max_iter=1000, solver="liblinear")
        classifier.fit(x_train, y_train[:, column])
        dev_scores[:, column] = classifier.predict_proba(x_dev)[:, 1]
        test_scores[:, column] = classifier.predict_proba(x_test)[:, 1]
    thresholds = tune_thresholds(multi_hot([e.emotions for e in dev], labels), dev_scores)
    return emotion_metrics(multi_hot([e.emotions for e in test], labels), test_scores, thresholds)
