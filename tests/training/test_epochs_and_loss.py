"""What a run reports: "1 epoch" is one pass over every batch the run trains on, and the headline loss is a
running average that tasks with very different losses taking turns do not swing."""
from __future__ import annotations

import pytest

from model.artifacts import shared_data_dir
from model.training.run import spec_from_params, train_version
from model.training.trainer import LOSS_SMOOTHING


def test_one_epoch_is_one_pass_over_every_task_s_batches(tiny_params, tmp_path):
    """Run 2 stopped at "epoch 0.849" with Epochs 1: steps came from the number of examples while the
    epoch shown was the largest task's stream (sampled less than its share at temperature 2)."""
    tiny_params.update(epochs=1)
    tiny_params["train"].update(grad_accum_steps=2, eval_every=0, task_temperature=2.0)
    reports = []
    spec = spec_from_params(tiny_params)
    outcome = train_version(spec, tmp_path / "v", shared_root=shared_data_dir(), callback=reports.append,
                            device="cpu")
    last = [r for r in reports if r.phase == "train"][-1]
    assert outcome.result.steps == last.step == last.total_steps == spec.train.max_steps
    assert not outcome.result.stopped_early and not outcome.result.stopped_by_time
    # the pass over every task's batches is complete at the last step, and was not one step earlier
    assert last.epoch >= 1.0 and last.epoch * (last.step - 1) / last.step < 1.0
    assert outcome.metrics["training"]["epochs"] == pytest.approx(last.epoch, abs=1e-3)


def test_the_reported_loss_is_each_task_s_running_average_averaged_over_tasks(tiny_run):
    outcome, reports = tiny_run
    history = outcome.result.history
    by_step = {r.step: r for r in reports}
    averages: dict[str, list[float]] = {}
    for entry in history:  # one micro-batch per step in the tiny run
        for task, value in entry["losses"].items():
            total, weight = averages.get(task, [0.0, 0.0])
            averages[task] = [LOSS_SMOOTHING * total + (1 - LOSS_SMOOTHING) * value,
                              LOSS_SMOOTHING * weight + (1 - LOSS_SMOOTHING)]
        expected = {task: total / weight for task, (total, weight) in averages.items()}
        report = by_step[entry["step"]]
        assert report.task_losses == pytest.approx(expected)
        assert report.loss == pytest.approx(sum(expected.values()) / len(expected))
    # the raw per-step loss is one task's at a time; the reported one moves less than it does
    raw = [entry["loss"] for entry in history]
    smooth = [by_step[entry["step"]].loss for entry in history]
    assert max(smooth) - min(smooth) <= max(raw) - min(raw)
