"""PNG plots of a run: loss curves per task and the topic confusion matrix (matplotlib, Agg backend)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on workers or CI
import matplotlib.pyplot as plt  # noqa: E402


def plot_loss_curves(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """history rows: {"step", "loss", "task"} for training and {"step", "dev_loss"} for evaluations."""
    by_task: dict[str, list[tuple[int, float]]] = defaultdict(list)
    dev: list[tuple[int, float]] = []
    for row in history:
        if "loss" in row:
            by_task[row.get("task", "all")].append((row["step"], row["loss"]))
        if "dev_loss" in row:
            dev.append((row["step"], row["dev_loss"]))
    figure, axes = plt.subplots(figsize=(7, 4))
    for task, points in sorted(by_task.items()):
        steps, losses = zip(*points, strict=True)
        axes.plot(steps, _smooth(losses), label=f"train {task}", linewidth=1)
    if dev:
        steps, losses = zip(*dev, strict=True)
        axes.plot(steps, losses, "k-o", label="dev (all tasks)", markersize=3)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.set_yscale("log")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


def plot_confusion(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    size = max(4.0, 0.6 * len(labels) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            axes.text(
                j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black"
            )
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


def _smooth(values: Sequence[float], window: int = 20) -> list[float]:
    """Trailing moving average: per-batch losses are noisy."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out
