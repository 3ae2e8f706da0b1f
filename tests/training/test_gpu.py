"""The trainer's CUDA path: bf16 autocast and fused AdamW (skipped without a GPU)."""
from __future__ import annotations

import math

import pytest
import torch

from model.artifacts import shared_data_dir
from model.training.run import initial_model, load_splits, spec_from_params
from model.training.trainer import Trainer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cuda_training_uses_bf16_autocast_and_fused_adamw(tiny_params):
    tiny_params["train"].update(max_steps=20, eval_every=10)
    spec = spec_from_params(tiny_params)
    splits = load_splits(spec, shared_data_dir())
    model, tokenizer, _ = initial_model(spec, splits["train"], shared_data_dir())
    trainer = Trainer(model, tokenizer, spec.train, splits["train"], splits["dev"], device="cuda")
    assert trainer.autocast_dtype == torch.bfloat16
    assert all(group["fused"] for group in trainer.optimizer.param_groups)
    result = trainer.train()
    assert all(math.isfinite(row["loss"]) for row in result.history)
    assert next(trainer.model.parameters()).device.type == "cuda"
