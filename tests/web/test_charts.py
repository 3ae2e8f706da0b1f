"""The metrics table of the training and run pages: one shape for runs and versions, fair 'best' marks."""
from __future__ import annotations

from db.versions import headline_metrics
from webapp.charts import metric_table

RUN_REPORT = {  # a training run's full report, as metrics.json and the run row hold it
    "held_out_score": 0.5,
    "test": {"topic": {"accuracy": 0.92, "macro_f1": 0.91, "calibration": {"after": {"ece": 0.04}}},
             "emotion": {"micro_f1": 0.46, "macro_f1": 0.37}, "summary": {"rouge1": 0.11, "rougeL": 0.08}},
    "training": {"steps": 3000, "train_seconds": 348.0, "threads": 2},
    "data": {"train": {"rows": 44818}},
}


def _rows(columns):
    return {row.name: row.cells for row in metric_table(columns)}


def test_a_run_and_its_version_read_alike_and_bookkeeping_is_left_out():
    version = headline_metrics(RUN_REPORT)  # what the version row keeps
    rows = _rows([RUN_REPORT, version])
    assert list(rows) == ["Held-out score (mean over the tasks it has)", "Topic accuracy", "Topic macro-F1",
                          "Topic calibration error (ECE)", "Emotion micro-F1", "Emotion macro-F1",
                          "Summary ROUGE-1", "Summary ROUGE-L"]
    assert all(a[0] == b[0] and not a[2] and not b[2] for a, b in rows.values())  # equal: no winner


def test_the_held_out_score_is_ranked_only_between_versions_scored_on_the_same_tasks():
    three_tasks = headline_metrics(RUN_REPORT)
    topic_only = {"held_out_score": 0.91, "topic_accuracy": 0.93, "topic_macro_f1": 0.91}
    rows = _rows([three_tasks, topic_only])
    assert [best for _, _, best in rows["Held-out score (mean over the tasks it has)"]] == [False, False]
    assert [best for _, _, best in rows["Topic accuracy"]] == [False, True]
    better = {**three_tasks, "held_out_score": 0.6}
    assert [best for _, _, best in _rows([three_tasks, better])["Held-out score (mean over the tasks it has)"]] \
        == [False, True]


def test_a_lower_calibration_error_is_the_better_one():
    worse = {**headline_metrics(RUN_REPORT), "topic_ece": 0.09}
    cells = _rows([headline_metrics(RUN_REPORT), worse])["Topic calibration error (ECE)"]
    assert [best for _, _, best in cells] == [True, False]
