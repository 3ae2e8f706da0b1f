"""LoRA for fine-tuning: add adapters to a trained model, and fold them back in before saving a version.

Versions are always saved merged (``lora_rank=0``), so inference never pays for adapters and every version
has the same shape as its parent.
"""

from __future__ import annotations

import dataclasses

import torch

from model.factory import build_model
from model.lora import LoRALinear, is_lora_parameter
from model.multitask import MultiTaskModel


def with_lora(model: MultiTaskModel, rank: int, alpha: float) -> MultiTaskModel:
    """A copy of `model` with fresh (no-op) adapters of `rank` on every attention projection."""
    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive, got {rank}")
    config = dataclasses.replace(model.config, lora_rank=rank, lora_alpha=alpha)
    adapted = build_model(config)  # adapters initialised: lora_b = 0, so outputs are unchanged
    missing, unexpected = adapted.load_state_dict(model.state_dict(), strict=False)
    not_lora = [name for name in missing if not is_lora_parameter(name)]
    if not_lora or unexpected:
        raise RuntimeError(f"cannot add adapters: missing {not_lora}, unexpected {unexpected}")
    return adapted.to(next(model.parameters()).device)


@torch.no_grad()
def merge_lora(model: MultiTaskModel) -> MultiTaskModel:
    """A copy without adapters whose projections hold base + adapter weights (same outputs)."""
    if model.config.lora_rank <= 0:
        return model
    merged_weights = {
        f"{name}.weight": module.merged_weight()
        for name, module in model.named_modules()
        if isinstance(module, LoRALinear)
    }
    state = {k: v for k, v in model.state_dict().items() if not is_lora_parameter(k)}
    state.update(merged_weights)
    plain = build_model(dataclasses.replace(model.config, lora_rank=0))
    plain.load_state_dict(state, strict=True)
    return plain.to(next(model.parameters()).device).train(model.training)
