"""The multitask trainer: summaries, topics and emotions on one shared encoder.

Each micro-batch holds one task, drawn with temperature sampling (p ~ n ** (1 / T)); its loss is scaled by
the task's weight. AdamW (decay on matrices only) with a cosine schedule after linear warm-up, gradient
accumulation and clipping, bf16 autocast on CUDA, optional torch.compile, LoRA or full fine-tuning. The dev
loss is measured every ``eval_every`` steps; the best weights are kept and restored at the end, and the run
stops early when the dev loss stops improving. An epoch is one pass over the batches of every task the run
trains on (after rows with labels the heads lack are dropped), so ``epochs`` sets ``max_steps`` exactly.
Everything random is seeded and checkpointed (safetensors + JSON), so a resumed run reproduces an
uninterrupted one step for step on the same hardware.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from model.lora import mark_only_lora_trainable
from model.multitask import MultiTaskModel
from model.training.batching import IGNORE_INDEX, Batch, TaskStream, encode_rows, fixed_batches
from model.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    python_rng_from_json,
    python_rng_to_json,
    restore_rng,
    save_checkpoint,
)
from model.training.config import TrainConfig
from model.training.data import Example
from model.training.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)


class TrainingCancelled(RuntimeError):
    """Raised by a progress callback to stop a run between steps (the caller decides what it means)."""


@dataclass
class Progress:
    step: int
    total_steps: int
    # smoothed training loss: the mean over tasks of each task's running average (an exponential moving
    # average of its micro-batch losses), so tasks with very different losses taking turns do not swing it
    loss: float
    learning_rate: float
    eta_s: float
    epoch: float  # passes over the training batches of all tasks together (micro-batches drawn / per epoch)
    phase: str = "train"  # train | eval
    dev_loss: float | None = None
    task_losses: dict[str, float] = field(default_factory=dict)  # each task's running average

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "total_steps": self.total_steps, "loss": round(self.loss, 5),
                "lr": self.learning_rate, "eta_s": round(self.eta_s, 1), "epoch": round(self.epoch, 3),
                "phase": self.phase, "dev_loss": self.dev_loss,
                "task_losses": {k: round(v, 5) for k, v in self.task_losses.items()}}


@dataclass
class TrainResult:
    steps: int
    best_step: int | None
    best_dev_loss: float | None
    stopped_early: bool
    stopped_by_time: bool
    history: list[dict[str, Any]]
    train_seconds: float


ProgressCallback = Callable[[Progress], None]

LOSS_SMOOTHING = 0.9  # per task: running average = 0.9 * running average + 0.1 * this micro-batch's loss


def steps_for_epochs(epochs: float, batches_per_epoch: int, grad_accum_steps: int) -> int:
    """Optimizer steps for `epochs` passes over `batches_per_epoch` micro-batches (every task's batches)."""
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    return max(1, math.ceil(epochs * batches_per_epoch / grad_accum_steps))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA generators


def configure_lora(model: MultiTaskModel) -> int:
    """Freeze everything but the adapters and the classification heads; returns trainable parameters."""
    if model.config.lora_rank <= 0:
        raise ValueError("mode='lora' needs a model built with lora_rank > 0 (see model.training.lora_ready)")
    return mark_only_lora_trainable(model, ("topic_head", "emotion_head"))


class Trainer:
    def __init__(
        self,
        model: MultiTaskModel,
        tokenizer: Any,
        config: TrainConfig,
        train: Sequence[Example],
        dev: Sequence[Example] = (),
        *,
        device: str | torch.device = "cpu",
        callback: ProgressCallback | None = None,
        checkpoint_dir: str | Path | None = None,
        epochs: float | None = None,
    ):
        """With `epochs`, config.max_steps is set to that many passes over the batches this run trains on."""
        self.config = config
        self.device = torch.device(device)
        self.callback = callback
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        seed_everything(config.seed)
        self.model = model.to(self.device)
        if config.mode == "lora":
            configure_lora(self.model)
        for name, param in self.model.named_parameters():
            if name.startswith(config.freeze) and config.freeze:
                param.requires_grad = False
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        log.info("training %s parameters (%s mode) on %s", f"{trainable:,}", config.mode, self.device)
        self.autocast_dtype = torch.bfloat16 if self._use_bf16() else None
        self.forward = torch.compile(self.model) if config.compile else self.model

        mc = model.config
        encode = dict(topic_labels=mc.topic_labels, emotion_labels=mc.emotion_labels,
                      max_input_length=config.max_input_length, max_summary_length=config.max_summary_length,
                      input_prefix=config.input_prefix)
        tasks = [t for t in config.tasks if self._has_head(t)]
        self.train_rows = {t: encode_rows(t, train, tokenizer, **encode) for t in tasks}
        self.train_rows = {t: rows for t, rows in self.train_rows.items() if len(rows)}
        if not self.train_rows:
            raise ValueError(f"no training examples for any of the tasks {list(config.tasks)}")
        limited_dev = _limit_per_task(dev, list(self.train_rows), config.max_dev_examples)
        batching = dict(batch_size=config.batch_size, max_tokens=config.max_tokens_per_batch,
                        pad_id=mc.pad_token_id, decoder_start_id=mc.decoder_start_token_id)
        self.dev_batches = {
            t: fixed_batches(rows, **batching)
            for t in self.train_rows
            if len(rows := encode_rows(t, limited_dev, tokenizer, **encode))
        }
        self.streams = {t: TaskStream(rows, seed=config.seed, **batching) for t, rows in self.train_rows.items()}
        self.tasks = list(self.streams)
        self.batches_per_epoch = sum(s.batches_per_epoch for s in self.streams.values())
        if epochs is not None:
            config.max_steps = steps_for_epochs(epochs, self.batches_per_epoch, config.grad_accum_steps)
            log.info("%s epochs over %d batches (%s): %d steps", epochs, self.batches_per_epoch,
                     {t: s.batches_per_epoch for t, s in self.streams.items()}, config.max_steps)
        sizes = [len(self.train_rows[t]) for t in self.tasks]
        weights = [n ** (1.0 / config.task_temperature) for n in sizes]
        self.task_probabilities = [w / sum(weights) for w in weights]
        log.info("tasks %s, rows %s, sampling probabilities %s", self.tasks, sizes,
                 [round(p, 3) for p in self.task_probabilities])

        self.optimizer = build_optimizer(self.model, config, self.device)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.task_rng = random.Random(f"{config.seed}:tasks")
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.best_dev_loss: float | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.evals_without_improvement = 0
        self.train_seconds = 0.0
        self.running_losses: dict[str, list[float]] = {}  # task -> [biased average, weight] (see _smooth)

    # ------------------------------------------------------------------ helpers
    def _use_bf16(self) -> bool:
        if self.config.precision == "bf16":
            return True
        return self.config.precision == "auto" and self.device.type == "cuda"

    def _has_head(self, task: str) -> bool:
        if task == "topic":
            return self.model.topic_head is not None
        if task == "emotion":
            return self.model.emotion_head is not None
        return True

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def task_loss(self, batch: Batch) -> torch.Tensor:
        with self._autocast():
            output = self.forward(batch.input_ids, batch.attention_mask, batch.decoder_input_ids)
        if batch.task == "summary":
            logits = output.lm_logits.float()  # (B, T_dec, V)
            return F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE_INDEX,
                                   label_smoothing=self.config.label_smoothing)
        if batch.task == "topic":
            return F.cross_entropy(output.classes.topic_logits.float(), batch.labels)
        return F.binary_cross_entropy_with_logits(output.classes.emotion_logits.float(), batch.labels)

    # ------------------------------------------------------------------ the loop
    def train(self) -> TrainResult:
        config = self.config
        self.model.train()
        started = time.perf_counter()
        offset = self.train_seconds
        stopped_early = stopped_by_time = False
        while self.step < config.max_steps:
            self.optimizer.zero_grad(set_to_none=True)
            step_losses: dict[str, list[float]] = {}
            for _ in range(config.grad_accum_steps):
                task = self.task_rng.choices(self.tasks, weights=self.task_probabilities)[0]
                batch = self.streams[task].next_batch().to(self.device)
                loss = self.task_loss(batch)
                (loss * config.task_weights.get(task, 1.0) / config.grad_accum_steps).backward()
                step_losses.setdefault(task, []).append(loss.item())
            if not all(math.isfinite(v) for values in step_losses.values() for v in values):
                raise FloatingPointError(f"non-finite loss at step {self.step}: {step_losses}; lower the learning rate")
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], config.max_grad_norm
            )
            learning_rate = self.optimizer.param_groups[0]["lr"]
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            losses = {task: sum(v) / len(v) for task, v in step_losses.items()}
            mean_loss = sum(sum(v) for v in step_losses.values()) / config.grad_accum_steps
            self.history.append({"step": self.step, "loss": mean_loss, "lr": learning_rate, "losses": losses})
            self._smooth(step_losses)
            self.train_seconds = offset + time.perf_counter() - started

            evaluated = False
            if config.eval_every and self.step % config.eval_every == 0 and self.step < config.max_steps:
                evaluated = True
                if self._evaluate_and_check_patience():
                    stopped_early = True
            if config.time_budget_s is not None and self.train_seconds >= config.time_budget_s:
                stopped_by_time = True
            if self.checkpoint_dir and config.checkpoint_every and self.step % config.checkpoint_every == 0:
                self.save_checkpoint(self.checkpoint_dir)
            if self.callback and (self.step % config.log_every == 0 or evaluated or stopped_early
                                  or stopped_by_time or self.step == config.max_steps):
                self._report(phase="eval" if evaluated else "train")
            if stopped_early or stopped_by_time:
                log.info("stopping at step %d (%s)", self.step, "early stopping" if stopped_early else "time budget")
                break
        if self.dev_batches and self.history and "dev_loss" not in self.history[-1]:
            self._evaluate_and_check_patience()
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
            log.info("restored the best dev weights (step %s, dev loss %.4f)", self.best_step, self.best_dev_loss)
        self.model.eval()
        return TrainResult(self.step, self.best_step, self.best_dev_loss, stopped_early, stopped_by_time,
                           self.history, self.train_seconds)

    def _smooth(self, step_losses: dict[str, list[float]]) -> None:
        """Fold this step's micro-batch losses into each task's running average (bias-corrected EMA)."""
        for task, values in step_losses.items():
            average = self.running_losses.setdefault(task, [0.0, 0.0])
            for value in values:
                average[0] = LOSS_SMOOTHING * average[0] + (1 - LOSS_SMOOTHING) * value
                average[1] = LOSS_SMOOTHING * average[1] + (1 - LOSS_SMOOTHING)

    def smoothed_losses(self) -> dict[str, float]:
        return {task: total / weight for task, (total, weight) in self.running_losses.items() if weight}

    @property
    def epochs_done(self) -> float:
        """Micro-batches drawn so far over the micro-batches in one pass over every task's rows."""
        return self.step * self.config.grad_accum_steps / max(1, self.batches_per_epoch)

    def _report(self, phase: str) -> None:
        per_task = self.smoothed_losses()
        rate = self.train_seconds / max(1, self.step)
        self.callback(Progress(
            step=self.step, total_steps=self.config.max_steps, loss=sum(per_task.values()) / max(1, len(per_task)),
            learning_rate=self.optimizer.param_groups[0]["lr"], eta_s=rate * (self.config.max_steps - self.step),
            epoch=self.epochs_done, phase=phase, dev_loss=self.history[-1].get("dev_loss"), task_losses=per_task,
        ))

    @torch.no_grad()
    def dev_loss(self) -> float | None:
        """Weighted mean over tasks of each task's mean dev loss (no dropout, no RNG consumed)."""
        if not self.dev_batches:
            return None
        was_training = self.model.training
        self.model.eval()
        total, weight_sum = 0.0, 0.0
        for task, batches in self.dev_batches.items():
            rows = sum(b.size for b in batches)
            task_total = sum(self.task_loss(b.to(self.device)).item() * b.size for b in batches)
            weight = self.config.task_weights.get(task, 1.0)
            total += weight * task_total / rows
            weight_sum += weight
        self.model.train(was_training)
        return total / weight_sum

    def _evaluate_and_check_patience(self) -> bool:
        """Measure dev loss, keep the best weights; True when patience has run out."""
        loss = self.dev_loss()
        if loss is None:
            return False
        self.history[-1]["dev_loss"] = loss
        log.info("step %d: dev loss %.4f", self.step, loss)
        if self.best_dev_loss is None or loss < self.best_dev_loss:
            self.best_dev_loss, self.best_step = loss, self.step
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.evals_without_improvement = 0
            return False
        self.evals_without_improvement += 1
        patience = self.config.early_stopping_patience
        return patience > 0 and self.evals_without_improvement >= patience

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, folder: str | Path) -> Path:
        state = {
            "step": self.step,
            "config": self.config.to_dict(),
            "model_config": self.model.config.to_dict(),
            "scheduler": self.scheduler.state_dict(),  # LambdaLR keeps None for a plain function: JSON-safe
            "streams": {t: s.state() for t, s in self.streams.items()},
            "task_rng": python_rng_to_json(self.task_rng),
            "python_rng": python_rng_to_json(random),
            "history": self.history,
            "best_dev_loss": self.best_dev_loss,
            "best_step": self.best_step,
            "evals_without_improvement": self.evals_without_improvement,
            "train_seconds": self.train_seconds,
            "running_losses": self.running_losses,
        }
        return save_checkpoint(folder, model_state=self.model.state_dict(), optimizer=self.optimizer,
                               trainer_state=state, best_state=self.best_state)

    def resume(self, folder: str | Path) -> None:
        """Continue from a checkpoint written by save_checkpoint with the same config and data."""
        saved = load_checkpoint(folder)
        trainer = saved["trainer"]
        # the time budget changes when the run stops, not what a step computes
        saved_config = {k: v for k, v in trainer["config"].items() if k != "time_budget_s"}
        current = {k: v for k, v in self.config.to_dict().items() if k != "time_budget_s"}
        if saved_config != current:
            changed = sorted(k for k, v in current.items() if saved_config.get(k) != v)
            raise CheckpointError(f"checkpoint {folder} was written with different training settings: {changed}")
        if trainer["model_config"] != self.model.config.to_dict():
            raise CheckpointError(f"checkpoint {folder} was written for a different model shape or labels")
        if sorted(trainer["streams"]) != sorted(self.streams):
            raise CheckpointError(f"checkpoint {folder} trained tasks {sorted(trainer['streams'])}, "
                                  f"this run has {sorted(self.streams)}")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(trainer["scheduler"])
        for task, state in trainer["streams"].items():
            self.streams[task].restore(state)
        self.task_rng = python_rng_from_json(trainer["task_rng"])
        random.setstate(python_rng_from_json(trainer["python_rng"]).getstate())
        restore_rng(saved["rng"])
        self.step = int(trainer["step"])
        self.history = trainer["history"]
        self.best_dev_loss = trainer["best_dev_loss"]
        self.best_step = trainer["best_step"]
        self.best_state = saved["best"]
        self.evals_without_improvement = int(trainer["evals_without_improvement"])
        self.train_seconds = float(trainer["train_seconds"])
        self.running_losses = {t: list(v) for t, v in trainer.get("running_losses", {}).items()}
        log.info("resumed from %s at step %d", folder, self.step)


def _limit_per_task(examples: Sequence[Example], tasks: list[str], limit: int) -> list[Example]:
    """At most `limit` examples per task (the first ones: dev order is fixed by the split)."""
    chosen: dict[int, Example] = {}
    for task in tasks:
        for example in [e for e in examples if e.has(task)][:limit]:
            chosen[id(example)] = example
    return list(chosen.values())

