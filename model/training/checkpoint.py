"""Resumable training checkpoints in safetensors + JSON; no pickle anywhere.

A checkpoint folder holds:
- ``model.safetensors``: the model's state dict;
- ``optimizer.safetensors``: every optimizer state tensor, keyed ``<param index>.<name>`` (exp_avg, ...);
- ``best.safetensors`` (optional): the weights of the best dev evaluation so far;
- ``rng.safetensors``: torch CPU (and CUDA) generator states;
- ``trainer.json``: step, training config, optimizer param groups, scheduler state, data-stream positions,
  Python RNG state, history and early-stopping state.
It is written under a temporary name and renamed over the previous one, so an interruption while saving
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import random
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

TRAINER_STATE = "trainer.json"
FORMAT = "leximind.train-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or does not fit this run."""


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and plain values (for JSON)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    for index, values in plain.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in plain["param_groups"]]
    return {"state": state, "param_groups": groups}


def rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"torch_cpu": torch.random.get_rng_state()}
    if torch.cuda.is_available():
        for i, rng_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = rng_state
    return tensors


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.random.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def python_rng_to_json(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def python_rng_from_json(data: list[Any]) -> random.Random:
    rng = random.Random()
    rng.setstate((data[0], tuple(data[1]), data[2]))
    return rng


def save_checkpoint(
    folder: str | Path,
    *,
    model_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    best_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in model_state.items()}, str(staging / "model.safetensors"))
        tensors, plain = optimizer_to_tensors(optimizer)
        save_file(tensors, str(staging / "optimizer.safetensors"))
        if best_state is not None:
            save_file({k: v.contiguous().cpu() for k, v in best_state.items()}, str(staging / "best.safetensors"))
        save_file(rng_tensors(), str(staging / "rng.safetensors"))
        state = {"format": FORMAT, **trainer_state, "optimizer": plain}
        (staging / TRAINER_STATE).write_text(json.dumps(state, indent=1))
        previous = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
        if folder.exists():
            folder.rename(previous)
        staging.rename(folder)
        shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def load_checkpoint(folder: str | Path) -> dict[str, Any]:
    """{"model": tensors, "optimizer": state dict, "best": tensors | None, "rng": tensors, "trainer": dict}."""
    folder = Path(folder)
    needed = ("model.safetensors", "optimizer.safetensors", "rng.safetensors", TRAINER_STATE)
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {folder} is incomplete: missing {missing}")
    trainer = json.loads((folder / TRAINER_STATE).read_text())
    if trainer.get("format") != FORMAT:
        raise CheckpointError(f"{folder / TRAINER_STATE} is not a {FORMAT} checkpoint")
    best = folder / "best.safetensors"
    return {
        "model": load_file(str(folder / "model.safetensors")),
        "optimizer": optimizer_from_tensors(load_file(str(folder / "optimizer.safetensors")), trainer.pop("optimizer")),
        "best": load_file(str(best)) if best.is_file() else None,
        "rng": load_file(str(folder / "rng.safetensors")),
        "trainer": trainer,
    }
