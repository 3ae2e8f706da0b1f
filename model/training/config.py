"""TrainConfig: every knob of a training run, JSON-serialisable (it goes into checkpoints and manifests)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

TASKS = ("summary", "topic", "emotion")
MODES = ("full", "lora")
PRECISIONS = ("auto", "fp32", "bf16")


class TrainConfigError(ValueError):
    """A training configuration that cannot be run; the message names the field."""


@dataclass
class TrainConfig:
    # --- what to learn ---
    tasks: tuple[str, ...] = TASKS
    task_weights: dict[str, float] = field(default_factory=lambda: {"summary": 1.0, "topic": 1.0, "emotion": 1.0})
    # tasks are sampled per micro-batch with p ~ n_examples ** (1 / T): T=1 proportional, large T uniform
    task_temperature: float = 2.0
    label_smoothing: float = 0.1  # summaries only
    # prepended to every encoder input; the inference pipeline (model.pipeline.SUMMARY_PREFIX) always adds
    # "summarize: " and runs all heads on that one encoder pass, so training must see the same input
    input_prefix: str = "summarize: "
    # --- optimisation ---
    learning_rate: float = 3e-4
    head_lr_scale: float = 1.0  # the topic and emotion heads learn at learning_rate * head_lr_scale
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01  # matrices only; norms, biases and vectors are not decayed
    warmup_steps: int = 100
    max_steps: int = 1000
    min_lr_ratio: float = 0.1  # cosine decays to learning_rate * min_lr_ratio at max_steps
    batch_size: int = 16  # examples per micro-batch (upper bound)
    max_tokens_per_batch: int = 8192  # padded encoder tokens per micro-batch (upper bound)
    grad_accum_steps: int = 1
    max_grad_norm: float = 1.0
    max_input_length: int = 512
    max_summary_length: int = 128
    # --- evaluation, early stopping, checkpoints ---
    eval_every: int = 200  # optimizer steps between dev evaluations; 0: only at the end
    max_dev_examples: int = 400  # per task, for the dev loss
    early_stopping_patience: int = 3  # dev evaluations without improvement before stopping; 0: never
    checkpoint_every: int = 0  # optimizer steps between resumable checkpoints; 0: none
    time_budget_s: float | None = None  # stop (as if max_steps were reached) after this much training time
    # --- how ---
    mode: str = "full"  # "full" or "lora" (adapters on attention + heads trainable)
    freeze: tuple[str, ...] = ()  # parameter-name prefixes kept fixed, e.g. ("token_embedding",)
    lora_rank: int = 8
    lora_alpha: float = 16.0
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False  # torch.compile the model's forward
    seed: int = 0
    log_every: int = 10  # optimizer steps between progress reports

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        self.freeze = tuple(self.freeze)
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown or not self.tasks:
            raise TrainConfigError(f"tasks must be a non-empty subset of {TASKS}, got {list(self.tasks)}")
        if self.mode not in MODES:
            raise TrainConfigError(f"mode={self.mode!r}; use one of {MODES}")
        if self.precision not in PRECISIONS:
            raise TrainConfigError(f"precision={self.precision!r}; use one of {PRECISIONS}")
        for name in ("max_steps", "batch_size", "grad_accum_steps", "max_input_length", "max_summary_length"):
            if getattr(self, name) <= 0:
                raise TrainConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise TrainConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.task_temperature <= 0:
            raise TrainConfigError(f"task_temperature must be positive, got {self.task_temperature}")
        if self.learning_rate <= 0:
            raise TrainConfigError(f"learning_rate must be positive, got {self.learning_rate}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["tasks"] = list(self.tasks)
        data["freeze"] = list(self.freeze)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainConfigError(f"unknown training settings: {unknown}; known: {sorted(known)}")
        return cls(**data)
