"""What a person may ask of a training run, checked once for the training page and the API, and turned
into the parameters the training job reads (model/training/run.py `spec_from_params`): the "finetune"
recipe with the chosen datasets, `include_feedback`, `epochs`, and `train` settings (tasks, learning rate,
mode). The corpus names are the recipe's (model/training/data.py CORPORA); the web app cannot import
model/, so they are listed here and the training job rejects any it does not know.
"""
from __future__ import annotations

from typing import Any

DATASETS = {
    "ag_news": "AG News — topic",
    "goemotions": "GoEmotions — emotions",
    "bbc": "BBC News — summaries",
    "scitldr": "SciTLDR — summaries",
    "dialogsum": "DialogSum — summaries",
}
TASKS = {"summary": "Summary", "topic": "Topic", "emotion": "Emotions"}
METHODS = {"lora": "LoRA adapters (fast, small)", "full": "Full fine-tune"}
DEFAULT_LEARNING_RATE = {"lora": 3e-4, "full": 1e-4}
MAX_EPOCHS = 50


class ParamError(ValueError):
    """A training request that cannot be run; the message says what to change."""


def _names(value: Any, allowed: dict[str, str], what: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ParamError(f"Choose at least one of the {what}: {', '.join(allowed)}.")
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ParamError(f"Unknown {what}: {', '.join(map(str, unknown))}; choose from {', '.join(allowed)}.")
    return sorted(set(value), key=list(allowed).index)


def parse_training_request(data: dict[str, Any]) -> dict[str, Any]:
    """Run parameters from a request with datasets, tasks, epochs, learning_rate, method, include_corrections."""
    method = data.get("method", "lora")
    if method not in METHODS:
        raise ParamError(f"method must be one of: {', '.join(METHODS)}.")
    try:
        epochs = int(data.get("epochs", 1))
        learning_rate = float(data.get("learning_rate") or DEFAULT_LEARNING_RATE[method])
    except (TypeError, ValueError) as exc:
        raise ParamError("epochs must be a whole number and learning_rate a number such as 0.0003.") from exc
    if not 1 <= epochs <= MAX_EPOCHS:
        raise ParamError(f"epochs must be between 1 and {MAX_EPOCHS}.")
    if not 1e-7 <= learning_rate <= 1e-1:
        raise ParamError("learning_rate must be between 0.0000001 and 0.1; 0.0003 suits LoRA, 0.0001 full.")
    include_corrections = data.get("include_corrections", True)
    if not isinstance(include_corrections, bool):
        raise ParamError("include_corrections must be true or false.")
    return {
        "recipe": "finetune",
        "datasets": _names(data.get("datasets", list(DATASETS)), DATASETS, "datasets"),
        "include_feedback": include_corrections,
        "epochs": epochs,
        "train": {
            "tasks": _names(data.get("tasks", list(TASKS)), TASKS, "tasks"),
            "learning_rate": learning_rate,
            "mode": method,
        },
    }


def describe(params: dict[str, Any]) -> dict[str, Any]:
    """A run's parameters as people read them (datasets, tasks, method, epochs, learning rate, corrections),
    whatever recipe created the run."""
    train = params.get("train") or {}
    return {
        "recipe": params.get("recipe"),
        "datasets": params.get("datasets") or [],
        "tasks": train.get("tasks") or params.get("tasks") or list(TASKS),
        "method": train.get("mode") or params.get("method") or "full",
        "epochs": params.get("epochs"),
        "max_steps": train.get("max_steps"),
        "learning_rate": train.get("learning_rate") or params.get("learning_rate"),
        "include_corrections": params.get("include_feedback", params.get("include_corrections", True)),
    }
