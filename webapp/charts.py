"""Geometry for the inline SVG charts (loss curves, metric bars); templates draw the markup."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from db.versions import HEADLINE_METRICS, headline_metrics


@dataclass
class Series:
    name: str
    points: str       # SVG polyline "x,y x,y ..."
    css_class: str
    last: tuple[float, float] | None  # where the newest point sits (for a marker)


@dataclass
class LineChart:
    width: int
    height: int
    left: int
    bottom: int
    series: list[Series]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    x_label: str
    y_label: str


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    return [round(start + i * step, 10) for i in range(count + 2) if start + i * step <= high + step * 0.5]


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:.3g}"


def line_chart(named_points: dict[str, list[tuple[float, float]]], *, x_label: str = "step",
               y_label: str = "loss", width: int = 640, height: int = 220) -> LineChart | None:
    """Scale every series into one plot; None when there is nothing to draw."""
    named_points = {name: pts for name, pts in named_points.items() if pts}
    if not named_points:
        return None
    xs = [x for pts in named_points.values() for x, _ in pts]
    ys = [y for pts in named_points.values() for _, y in pts]
    x_ticks = nice_ticks(min(xs), max(xs))
    y_ticks = nice_ticks(min(0.0, min(ys)), max(ys))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    left, right, top, bottom = 48, 12, 10, 28
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - (y - y0) / ((y1 - y0) or 1) * plot_h

    series = []
    for index, (name, pts) in enumerate(named_points.items()):
        coords = [(round(sx(x), 1), round(sy(y), 1)) for x, y in pts]
        series.append(Series(name, " ".join(f"{x},{y}" for x, y in coords), f"series-{index % 4}", coords[-1]))
    return LineChart(
        width=width, height=height, left=left, bottom=height - bottom, series=series,
        x_ticks=[(round(sx(t), 1), _label(t)) for t in x_ticks],
        y_ticks=[(round(sy(t), 1), _label(t)) for t in y_ticks],
        x_label=x_label, y_label=y_label,
    )


def _series(history: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(float(h["step"]), float(h[key])) for h in history
            if isinstance(h.get("step"), int | float) and isinstance(h.get(key), int | float)
            and not isinstance(h.get(key), bool)]


def loss_chart(history: list[dict[str, Any]]) -> LineChart | None:
    """Training loss per step (the mean over tasks of each task's running average: one micro-batch is one
    task, and the tasks' losses differ by two orders of magnitude), and the dev-set loss at each evaluation
    (the training job's `dev_loss`)."""
    return line_chart({"training loss (running mean over tasks)": _series(history, "loss"),
                       "dev loss": _series(history, "dev_loss") or _series(history, "eval_loss")})


def learning_rate_chart(history: list[dict[str, Any]]) -> LineChart | None:
    return line_chart({"learning rate": _series(history, "lr")}, y_label="learning rate", height=140)


# headline metric (db.versions.HEADLINE_METRICS, in its order) -> (label, lower is better)
METRIC_LABELS = {
    "held_out_score": ("Held-out score (mean over the tasks it has)", False),
    "topic_accuracy": ("Topic accuracy", False),
    "topic_macro_f1": ("Topic macro-F1", False),
    "topic_ece": ("Topic calibration error (ECE)", True),
    "emotion_micro_f1": ("Emotion micro-F1", False),
    "emotion_macro_f1": ("Emotion macro-F1", False),
    "rouge1": ("Summary ROUGE-1", False),
    "rougeL": ("Summary ROUGE-L", False),
}
_TASK_MARKERS = ("topic_accuracy", "emotion_micro_f1", "rougeL")  # which tasks a column was scored on


@dataclass
class MetricRow:
    name: str
    cells: list[tuple[float | None, float, bool]]  # (value, bar fraction 0..1, best in the row)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
        value) else None


def metric_table(columns: list[dict[str, Any]]) -> list[MetricRow]:
    """Headline metrics side by side: one row per metric, one cell per column (a run's full report or a
    version's headline numbers, read into one shape by ``db.versions.headline_metrics``).

    The best cell of a row is marked only where the columns differ; the held-out score only among columns
    scored on the same tasks (a topic-only version's mean is not comparable with a three-task one's)."""
    heads = [{k: _number(v) for k, v in headline_metrics(c).items()} for c in columns]
    tasks = {tuple(h[m] is not None for m in _TASK_MARKERS) for h in heads if h["held_out_score"] is not None}
    rows = []
    for key in HEADLINE_METRICS:
        label, lower_is_better = METRIC_LABELS[key]
        values = [h[key] for h in heads]
        known = [v for v in values if v is not None]
        if not known:
            continue
        top = max(abs(v) for v in known) or 1.0
        comparable = len(set(known)) > 1 and (key != "held_out_score" or len(tasks) == 1)
        best = (min(known) if lower_is_better else max(known)) if comparable else None
        rows.append(MetricRow(label, [(v, abs(v) / top if v is not None else 0.0, v is not None and v == best)
                                      for v in values]))
    return rows
