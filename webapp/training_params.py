"""What a person may ask of a training run, checked once for the training page and the API, and turned
into the parameters the training job reads (model/training/run.py `spec_from_params`): the "finetune"
recipe with the chosen datasets, `include_feedback`, `epochs`, and `train` settings (tasks, learning rate,
mode). A request is either the flat form (`datasets`, `tasks`, `epochs`, `learning_rate`, `method`,
`include_corrections`) or the stored params' own shape (what GET returns in `params`); any other field is
refused, naming it. The corpus names and their topic labels are the recipe's (model/training/data.py
CORPORA, BBC_CATEGORIES, AG_NEWS_CLASSES); the web app cannot import model/, so they are listed here (a test
checks they agree) and the training job rejects any it does not know.
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
# the topic labels of the corpora that have them: a run training topics on a corpus none of whose labels the
# active model's topic head has is refused (its rows would be thrown away, or score a head that cannot win)
DATASET_TOPICS = {
    "ag_news": ("World", "Sports", "Business", "Sci/Tech"),
    "bbc": ("business", "entertainment", "politics", "sport", "tech"),
}
# what each corpus labels (model/training/data.py; a test checks they agree): a run needs examples for its tasks
DATASET_TASKS = {
    "ag_news": ("topic",),
    "goemotions": ("emotion",),
    "bbc": ("summary", "topic"),
    "scitldr": ("summary",),
    "dialogsum": ("summary",),
}
REQUEST_FIELDS = ("datasets", "tasks", "epochs", "learning_rate", "method", "include_corrections")
# the stored params' shape, so that a run's `params` can be sent back to start the same run again
PARAMS_FIELDS = ("recipe", "include_feedback", "train")
TRAIN_FIELDS = {"tasks": "tasks", "learning_rate": "learning_rate", "mode": "method"}  # train.X -> request field


class ParamError(ValueError):
    """A training request that cannot be run; the message says what to change."""


def _names(value: Any, allowed: dict[str, str], what: str) -> list[str]:
    # the form's names for people, the keys for API clients: "AG News — topic (ag_news), ..."
    choices = ", ".join(f"{label} ({key})" for key, label in allowed.items())
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ParamError(f"Choose at least one of the {what}: {choices}.")
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ParamError(f"Unknown {what}: {', '.join(map(str, unknown))}; choose from {choices}.")
    return sorted(set(value), key=list(allowed).index)


def _request_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The flat request fields from either shape; unknown fields, and a setting given twice differently, are
    refused."""
    unknown = [k for k in data if k not in REQUEST_FIELDS + PARAMS_FIELDS]
    if unknown:
        raise ParamError(f"Unknown field(s): {', '.join(map(str, unknown))}. A training request takes "
                         f"{', '.join(REQUEST_FIELDS)} (or the run params' shape: datasets, epochs, "
                         "include_feedback and train with tasks, learning_rate, mode).")
    if data.get("recipe", "finetune") != "finetune":
        raise ParamError('recipe must be "finetune": that is the only recipe a request can start.')
    train = data.get("train", {})
    if not isinstance(train, dict):
        raise ParamError("train must be an object with tasks, learning_rate and mode.")
    unknown = [k for k in train if k not in TRAIN_FIELDS]
    if unknown:
        raise ParamError(f"Unknown field(s) in train: {', '.join(map(str, unknown))}; train takes "
                         f"{', '.join(TRAIN_FIELDS)}.")
    fields = {k: v for k, v in data.items() if k in REQUEST_FIELDS}
    aliases = [(f"train.{k}", v, TRAIN_FIELDS[k]) for k, v in train.items()]
    if "include_feedback" in data:
        aliases.append(("include_feedback", data["include_feedback"], "include_corrections"))
    for given, value, name in aliases:
        if name in fields and fields[name] != value:
            raise ParamError(f"{given} and {name} say different things; give one of them.")
        fields[name] = value
    return fields


def parse_training_request(data: dict[str, Any]) -> dict[str, Any]:
    """Run parameters from a request with datasets, tasks, epochs, learning_rate, method, include_corrections
    (or the same settings in the run params' shape)."""
    data = _request_fields(data)
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


def dataset_name(name: str) -> str:
    return DATASETS.get(name, name).split(" — ")[0]


def topic_mismatches(datasets: list[str], head: list[str]) -> list[str]:
    """The datasets none of whose topics the topic head `head` has."""
    return [name for name in datasets if name in DATASET_TOPICS and not set(DATASET_TOPICS[name]) & set(head)]


def topic_mismatch_words(name: str, version: str, head: list[str]) -> str:
    """"AG News topics (World, ...) do not match the active model v1's topic head (business, ...)"."""
    return (f"{dataset_name(name)} topics ({', '.join(DATASET_TOPICS[name])}) do not match the active model "
            f"{version}'s topic head ({', '.join(head)})")


def check_topic_head(params: dict[str, Any], version: str, head: list[str]) -> None:
    """Refuse a run that trains topics on a dataset whose topics the active model's head (`head`) lacks."""
    if "topic" not in params["train"]["tasks"]:
        return
    for name in topic_mismatches(params["datasets"], head):
        raise ParamError(f"{topic_mismatch_words(name, version, head)}: leave {dataset_name(name)} out, or "
                         "untick the Topic task.")


def check_tasks_have_examples(params: dict[str, Any], corrected: set[str]) -> None:
    """Refuse a run with a task that none of its datasets (nor, when included, the corrections) has labels
    for: it would fail in the worker ('no training examples'), or train nothing for that task."""
    supplied = {task for name in params["datasets"] for task in DATASET_TASKS.get(name, ())}
    if params["include_feedback"]:
        supplied |= corrected
    missing = [task for task in params["train"]["tasks"] if task not in supplied]
    if missing:
        offer = "; ".join(f"{TASKS[task]}: {', '.join(dataset_name(n) for n, t in DATASET_TASKS.items() if task in t)}"
                          for task in missing)
        raise ParamError(f"No chosen data set has examples for {', '.join(TASKS[t] for t in missing)} "
                         f"({offer} have them). Add one of those data sets, or untick the task.")


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
