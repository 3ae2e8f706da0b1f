"""What a person may ask of a training run, checked once for the training page and the API.

The corpus names are the training recipe's (model/training/data.py CORPORA); the web app cannot import
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
    """Validated run parameters: datasets, tasks, epochs, learning_rate, method, include_corrections."""
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
        "datasets": _names(data.get("datasets", list(DATASETS)), DATASETS, "datasets"),
        "tasks": _names(data.get("tasks", list(TASKS)), TASKS, "tasks"),
        "epochs": epochs,
        "learning_rate": learning_rate,
        "method": method,
        "include_corrections": include_corrections,
    }
