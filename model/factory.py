"""Building models: random initialisation from a config, and loading checkpoints.

``load_pretrained`` accepts a folder written by ``MultiTaskModel.save_pretrained`` (our config.json), a
transformers T5 / FLAN-T5 checkpoint folder, or a hub id (downloaded with huggingface_hub when reachable).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.attention import MultiHeadAttention, RelativePositionBias
from model.checkpoint import copy_state, head_is_tied, map_t5_state, read_state_dict
from model.config import CONFIG_FORMAT, ModelConfig
from model.heads import AttentionPooling, ClassificationHead
from model.layers import GatedGeluFeedForward, ReluFeedForward, RMSNorm
from model.lora import LoRALinear
from model.multitask import CONFIG_FILE, MultiTaskModel

logger = logging.getLogger(__name__)

_HUB_FILES = [
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*.safetensors",
    "spiece.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
]


def build_model(config: ModelConfig) -> MultiTaskModel:
    """A randomly initialised model (T5's initialisation scheme)."""
    model = MultiTaskModel(config)
    init_weights(model)
    return model


@torch.no_grad()
def init_weights(model: MultiTaskModel) -> None:
    """T5's init: weights scaled by fan-in so that unscaled attention scores stay O(1)."""
    c = model.config
    nn.init.normal_(model.token_embedding.weight, std=1.0)
    if model.lm_head is not None:
        # transformers uses std 1.0 here; d_model**-0.5 gives O(1) logits for an untrained untied head
        nn.init.normal_(model.lm_head.weight, std=c.d_model**-0.5)
    for module in model.modules():
        if isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
        elif isinstance(module, RelativePositionBias):
            nn.init.normal_(module.embedding.weight, std=c.d_model**-0.5)
        elif isinstance(module, MultiHeadAttention):
            nn.init.normal_(module.q.weight, std=(c.d_model * c.d_kv) ** -0.5)
            nn.init.normal_(module.k.weight, std=c.d_model**-0.5)
            nn.init.normal_(module.v.weight, std=c.d_model**-0.5)
            nn.init.normal_(module.o.weight, std=(c.num_heads * c.d_kv) ** -0.5)
        elif isinstance(module, GatedGeluFeedForward):
            nn.init.normal_(module.wi_0.weight, std=c.d_model**-0.5)
            nn.init.normal_(module.wi_1.weight, std=c.d_model**-0.5)
            nn.init.normal_(module.wo.weight, std=c.d_ff**-0.5)
        elif isinstance(module, ReluFeedForward):
            nn.init.normal_(module.wi.weight, std=c.d_model**-0.5)
            nn.init.normal_(module.wo.weight, std=c.d_ff**-0.5)
        elif isinstance(module, ClassificationHead):
            nn.init.normal_(module.proj.weight, std=0.02)
            nn.init.zeros_(module.proj.bias)
        elif isinstance(module, AttentionPooling):
            nn.init.normal_(module.score.weight, std=0.02)
            nn.init.zeros_(module.score.bias)
    for module in model.modules():  # adapters start as a no-op
        if isinstance(module, LoRALinear):
            nn.init.kaiming_uniform_(module.lora_a, a=math.sqrt(5))
            nn.init.zeros_(module.lora_b)


def load_pretrained(
    path_or_hub_id: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **config_overrides: Any,
) -> MultiTaskModel:
    """Load a model in eval mode. config_overrides (e.g. topic_labels=..., lora_rank=...) apply to T5
    checkpoints only; the added heads and adapters are freshly initialised."""
    folder = _resolve_folder(path_or_hub_id)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{folder} has no {CONFIG_FILE}; expected a T5 checkpoint or a saved LexiMind model"
        )
    raw = json.loads(config_path.read_text())
    if raw.get("format") == CONFIG_FORMAT:
        if config_overrides:
            raise ValueError(
                f"config overrides apply to T5 checkpoints only, not to saved models: {config_overrides}"
            )
        return MultiTaskModel.from_folder(folder, device=device, dtype=dtype)
    return load_t5_checkpoint(folder, raw, device=device, dtype=dtype, **config_overrides)


def load_t5_checkpoint(
    folder: Path,
    raw_config: dict[str, Any],
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **config_overrides: Any,
) -> MultiTaskModel:
    base = ModelConfig.from_t5_config(raw_config)  # raises ConfigError for non-T5 checkpoints
    state = read_state_dict(folder)
    tied = head_is_tied(state)
    config = ModelConfig.from_t5_config(raw_config, tie_word_embeddings=tied, **config_overrides)
    if base.scale_decoder_outputs != config.scale_decoder_outputs:
        raise ValueError("scale_decoder_outputs is read from the checkpoint config and cannot be overridden")
    model = build_model(config)
    copy_state(model, map_t5_state(state, tied), source=str(folder), allow_model_only_missing=True)
    logger.info(
        "loaded T5 checkpoint %s (%s head, %s FFN, %d+%d layers)",
        folder,
        "tied" if tied else "untied",
        config.feed_forward_proj,
        config.num_layers,
        config.num_decoder_layers,
    )
    return model.to(device=device, dtype=dtype).eval()


def _resolve_folder(path_or_hub_id: str | Path) -> Path:
    path = Path(path_or_hub_id)
    if path.is_dir():
        return path
    text = str(path_or_hub_id)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise FileNotFoundError(
            f"model folder {text!r} does not exist (and is not a hub id like 'google/flan-t5-base')"
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=text, allow_patterns=_HUB_FILES))
    except Exception as err:  # network, auth or unknown repo: one actionable message
        raise FileNotFoundError(
            f"{text!r} is not a local folder and could not be fetched from the hub ({type(err).__name__}: {err}); "
            "download the checkpoint and pass its folder"
        ) from err
