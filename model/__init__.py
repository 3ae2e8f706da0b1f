"""LexiMind's model: a from-scratch encoder-decoder that is numerically FLAN-T5, with task heads.

Heavy optional pieces (tokenizer, preprocessing, zero-shot scoring) are imported lazily so that
``import model`` stays cheap and never imports transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from model.checkpoint import CheckpointError
from model.config import ConfigError, ModelConfig
from model.factory import build_model, load_pretrained
from model.generation import GenerationSettings, generate
from model.heads import ClassifierOutput
from model.kv_cache import DecoderCache
from model.multitask import MultiTaskModel, MultiTaskOutput

if TYPE_CHECKING:
    from model.preprocessing import BasicTextCleaner, TextPreprocessor
    from model.tokenizer import Tokenizer
    from model.zero_shot import ZeroShotResult, zero_shot_emotions, zero_shot_topics

_LAZY = {
    "Tokenizer": "model.tokenizer",
    "TokenizerError": "model.tokenizer",
    "BasicTextCleaner": "model.preprocessing",
    "TextPreprocessor": "model.preprocessing",
    "ZeroShotResult": "model.zero_shot",
    "zero_shot_topics": "model.zero_shot",
    "zero_shot_emotions": "model.zero_shot",
    "score_targets": "model.zero_shot",
}

__all__ = [
    "BasicTextCleaner",
    "CheckpointError",
    "ClassifierOutput",
    "ConfigError",
    "DecoderCache",
    "GenerationSettings",
    "ModelConfig",
    "MultiTaskModel",
    "MultiTaskOutput",
    "TextPreprocessor",
    "Tokenizer",
    "TokenizerError",
    "ZeroShotResult",
    "build_model",
    "generate",
    "load_pretrained",
    "score_targets",
    "zero_shot_emotions",
    "zero_shot_topics",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
