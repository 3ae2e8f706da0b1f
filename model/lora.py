"""LoRA: low-rank adapters on the attention projections (q, k, v, o).

``LoRALinear`` is an ``nn.Linear`` (its frozen base weight keeps the name ``weight``, so checkpoints map
unchanged) plus two small matrices whose product is added to the output, scaled by alpha / rank.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LoRALinear(nn.Linear):
    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float):
        super().__init__(in_features, out_features, bias=False)
        if rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        self.rank = rank
        self.scaling = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, in_features))
        self.lora_b = nn.Parameter(torch.zeros(out_features, rank))  # zero: the adapter starts as a no-op
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scaling

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        """The dense weight equivalent to base + adapter, e.g. for export without adapters."""
        return self.weight + (self.lora_b @ self.lora_a) * self.scaling


def projection(in_features: int, out_features: int, lora_rank: int, lora_alpha: float) -> nn.Linear:
    """A bias-free projection, with a LoRA adapter when lora_rank > 0."""
    if lora_rank > 0:
        return LoRALinear(in_features, out_features, lora_rank, lora_alpha)
    return nn.Linear(in_features, out_features, bias=False)


def is_lora_parameter(name: str) -> bool:
    return name.endswith(".lora_a") or name.endswith(".lora_b")


def mark_only_lora_trainable(model: nn.Module, also_trainable: tuple[str, ...] = ()) -> int:
    """Freeze everything except LoRA adapters and parameters whose name starts with one of also_trainable
    (e.g. ("topic_head", "emotion_head")). Returns the number of trainable parameters."""
    count = 0
    for name, param in model.named_parameters():
        param.requires_grad = is_lora_parameter(name) or name.startswith(also_trainable)
        count += param.numel() if param.requires_grad else 0
    return count
