"""ModelConfig: the shape of a T5 encoder-decoder plus LexiMind's task heads.

One dataclass describes both a FLAN-T5 checkpoint (read from a T5 ``config.json`` with
``ModelConfig.from_t5_config``) and our own saved models (``to_dict``/``from_dict``, JSON).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FEED_FORWARD_KINDS = ("gated-gelu", "relu")
POOLING_KINDS = ("mean", "attention")
# marks a config.json written by us, so a folder can be told apart from a transformers checkpoint
CONFIG_FORMAT = "leximind.model/1"


class ConfigError(ValueError):
    """A config that does not describe a model this package can build."""


@dataclass
class ModelConfig:
    # --- T5 shapes (defaults: FLAN-T5-base) ---
    vocab_size: int = 32128
    d_model: int = 768
    d_kv: int = 64  # per-head width; num_heads * d_kv need not equal d_model
    d_ff: int = 2048
    num_layers: int = 12  # encoder blocks
    num_decoder_layers: int | None = None  # None: same as num_layers
    num_heads: int = 12
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    feed_forward_proj: str = "gated-gelu"  # "gated-gelu" (T5 v1.1 / FLAN, gelu_new) or "relu" (original T5)
    # LM head: tied shares the token embedding matrix; untied has its own lm_head.weight (v1.1 / FLAN)
    tie_word_embeddings: bool = False
    # multiply decoder output by d_model**-0.5 before the LM head (original T5); None: same as tie_word_embeddings
    scale_decoder_outputs: bool | None = None
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    # --- special tokens ---
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0
    max_input_length: int = 512  # tokenizer truncation policy for encoder inputs
    # --- task heads (a head exists only when its label tuple is non-empty) ---
    topic_labels: tuple[str, ...] = ()
    emotion_labels: tuple[str, ...] = ()
    pooling: str = "mean"  # "mean" or "attention" (learned attention pooling)
    # --- adapters ---
    lora_rank: int = 0  # 0: no LoRA; otherwise rank of the adapters on attention q/k/v/o
    lora_alpha: float = 16.0  # adapter output is scaled by lora_alpha / lora_rank
    extra: dict[str, Any] = field(default_factory=dict)  # free-form metadata kept through save/load

    def __post_init__(self) -> None:
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        if self.scale_decoder_outputs is None:
            self.scale_decoder_outputs = self.tie_word_embeddings
        self.topic_labels = tuple(self.topic_labels)
        self.emotion_labels = tuple(self.emotion_labels)
        if self.feed_forward_proj not in FEED_FORWARD_KINDS:
            raise ConfigError(
                f"feed_forward_proj={self.feed_forward_proj!r} is not supported; use one of {FEED_FORWARD_KINDS}"
            )
        if self.pooling not in POOLING_KINDS:
            raise ConfigError(f"pooling={self.pooling!r} is not supported; use one of {POOLING_KINDS}")
        for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lora_rank < 0:
            raise ConfigError(f"lora_rank must be >= 0, got {self.lora_rank}")
        for kind, labels in (("topic", self.topic_labels), ("emotion", self.emotion_labels)):
            if len(set(labels)) != len(labels):
                raise ConfigError(f"{kind}_labels contains duplicates: {labels}")

    @property
    def is_gated(self) -> bool:
        return self.feed_forward_proj == "gated-gelu"

    # ------------------------------------------------------------------ our JSON format
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["topic_labels"] = list(self.topic_labels)
        data["emotion_labels"] = list(self.emotion_labels)
        return {"format": CONFIG_FORMAT, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        fmt = data.pop("format", CONFIG_FORMAT)
        if fmt != CONFIG_FORMAT:
            raise ConfigError(f"config format {fmt!r} is not {CONFIG_FORMAT!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown ModelConfig fields: {unknown}")
        return cls(**data)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> ModelConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    # ------------------------------------------------------------------ transformers' T5 config.json
    @classmethod
    def from_t5_config(cls, source: dict[str, Any] | str | Path, **overrides: Any) -> ModelConfig:
        """Read a transformers T5 ``config.json`` (a dict, the file, or its folder).

        Head rule (mirrors transformers 4 and 5): ``scale_decoder_outputs`` is taken from the config when
        present (transformers 5 writes it), else it equals ``tie_word_embeddings``, which defaults to True
        (original T5) and is false in T5 v1.1 / FLAN-T5 configs. Whether the head is actually tied is decided
        from the checkpoint's weights by the loader (``model.checkpoint``), which passes it in ``overrides``.
        """
        data = _read_json_source(source)
        model_type = data.get("model_type")
        if model_type != "t5":
            archs = data.get("architectures")
            raise ConfigError(
                f"not a T5 checkpoint: config.json has model_type={model_type!r}"
                + (f" (architectures={archs})" if archs else "")
                + "; only T5 / FLAN-T5 encoder-decoder checkpoints can be loaded"
            )
        feed_forward = data.get("feed_forward_proj", "relu")
        if feed_forward == "gated-gelu_new":
            feed_forward = "gated-gelu"
        tie = bool(data.get("tie_word_embeddings", True))
        scale = data.get("scale_decoder_outputs", tie)
        eos = data.get("eos_token_id", 1)
        values: dict[str, Any] = dict(
            vocab_size=data.get("vocab_size", 32128),
            d_model=data.get("d_model", 512),
            d_kv=data.get("d_kv", 64),
            d_ff=data.get("d_ff", 2048),
            num_layers=data.get("num_layers", 6),
            num_decoder_layers=data.get("num_decoder_layers"),
            num_heads=data.get("num_heads", 8),
            relative_attention_num_buckets=data.get("relative_attention_num_buckets", 32),
            relative_attention_max_distance=data.get("relative_attention_max_distance", 128),
            feed_forward_proj=feed_forward,
            tie_word_embeddings=tie,
            scale_decoder_outputs=bool(scale),
            dropout_rate=data.get("dropout_rate", 0.1),
            layer_norm_epsilon=data.get("layer_norm_epsilon", 1e-6),
            pad_token_id=_or_default(data.get("pad_token_id"), 0),
            eos_token_id=eos[0] if isinstance(eos, list) else _or_default(eos, 1),
            decoder_start_token_id=_or_default(data.get("decoder_start_token_id"), 0),
        )
        values.update(overrides)
        return cls(**values)


def _or_default(value: Any, default: int) -> int:
    return default if value is None else int(value)


def _read_json_source(source: dict[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    path = Path(source)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config.json at {path}")
    return json.loads(path.read_text())
