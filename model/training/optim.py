"""AdamW with decay on matrices only, and a cosine schedule with linear warm-up."""

from __future__ import annotations

import math

import torch
from torch import nn

from model.training.config import TrainConfig

HEADS = ("topic_head.", "emotion_head.")


def build_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """Parameters with dim >= 2 (matrices, embeddings) are decayed; norms and biases are not. The task heads
    get their own groups when head_lr_scale != 1 (same decay rule)."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    split_heads = config.head_lr_scale != 1.0
    groups = []
    for heads in ((False, True) if split_heads else (None,)):
        chosen = [p for name, p in trainable if heads is None or name.startswith(HEADS) == heads]
        lr = config.learning_rate * (config.head_lr_scale if heads else 1.0)
        groups += [
            {"params": [p for p in chosen if p.dim() >= 2], "weight_decay": config.weight_decay, "lr": lr},
            {"params": [p for p in chosen if p.dim() < 2], "weight_decay": 0.0, "lr": lr},
        ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(
        groups,
        lr=config.learning_rate,
        betas=config.betas,
        eps=config.eps,
        fused=device.type == "cuda",
    )


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier on the base learning rate for optimizer step `step` (0-based)."""
    if config.warmup_steps > 0 and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
