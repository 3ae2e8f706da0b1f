"""Reading transformers T5 checkpoints and copying weights strictly.

Key mapping is explicit (``t5_key_to_ours``): every checkpoint key is either mapped, a known alias of the
shared embedding, or a known unused key (the cross-attention bias table that early T5 checkpoints carry and
T5 never uses); anything else is an error that names it. Every shape is checked before anything is copied.

Tied or untied LM head is decided from the weights: untied when the checkpoint has an ``lm_head.weight``
that differs from ``shared.weight`` (T5 v1.1 / FLAN-T5), tied otherwise. Whether decoder outputs are rescaled
by d_model**-0.5 comes from the config (see ``ModelConfig.from_t5_config``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

SHARED = "shared.weight"
EMBEDDING_ALIASES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
# carried by original T5 checkpoints; T5 has no position bias in cross-attention, transformers ignores it too
UNUSED_KEYS = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)

# Both stacks number a block's sublayers (T5 ``layer.<n>``) where ours name them; one table describes
# both, and the patterns below are generated from it: (T5 module of sublayer n, our module name).
_SUBLAYERS = {
    "encoder": (("SelfAttention", "attn"), ("DenseReluDense", "ff")),
    "decoder": (("SelfAttention", "self_attn"), ("EncDecAttention", "cross_attn"), ("DenseReluDense", "ff")),
}
_PROJECTIONS = {"DenseReluDense": "wi|wi_0|wi_1|wo"}  # attention modules: q, k, v, o


def _stack_patterns(stack: str, sublayers: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    block = rf"{stack}\.block\.(?P<i>\d+)\.layer"
    patterns = [
        (
            rf"{stack}\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.weight",
            f"{stack}.relative_bias.embedding.weight",
        ),
        (rf"{stack}\.final_layer_norm\.weight", f"{stack}.final_norm.weight"),
    ]
    for index, (t5_module, ours) in enumerate(sublayers):
        projections = _PROJECTIONS.get(t5_module, "q|k|v|o")
        patterns += [
            (
                rf"{block}\.{index}\.{t5_module}\.(?P<proj>{projections})\.weight",
                f"{stack}.blocks.{{i}}.{ours}.{{proj}}.weight",
            ),
            (rf"{block}\.{index}\.layer_norm\.weight", f"{stack}.blocks.{{i}}.{ours}_norm.weight"),
        ]
    return patterns


_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(pattern), target)
    for stack, sublayers in _SUBLAYERS.items()
    for pattern, target in _stack_patterns(stack, sublayers)
] + [
    (re.compile(r"shared\.weight"), "token_embedding.weight"),
    (re.compile(r"lm_head\.weight"), "lm_head.weight"),
]


class CheckpointError(ValueError):
    """A checkpoint whose keys or shapes do not fit the model; the message lists every offending key."""


def t5_key_to_ours(name: str) -> str | None:
    for pattern, target in _PATTERNS:
        match = pattern.fullmatch(name)
        if match:
            return target.format(**match.groupdict())
    return None


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, a sharded model.safetensors.index.json, or pytorch_model.bin (weights only)."""
    from safetensors.torch import load_file

    if (folder / "model.safetensors").is_file():
        return load_file(str(folder / "model.safetensors"))
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(load_file(str(folder / shard)))
        return state
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(
        f"no weights in {folder}: expected model.safetensors, model.safetensors.index.json or pytorch_model.bin"
    )


def head_is_tied(state: dict[str, torch.Tensor]) -> bool:
    head, shared = state.get("lm_head.weight"), state.get(SHARED)
    if head is None:
        return True
    return shared is not None and head.shape == shared.shape and torch.equal(head, shared)


def map_t5_state(state: dict[str, torch.Tensor], tied: bool) -> dict[str, torch.Tensor]:
    """Rename a T5 state dict to our names. Raises CheckpointError listing every key that has no place."""
    state = dict(state)
    if SHARED not in state:  # some exports keep only the per-stack copies of the shared table
        alias = next((a for a in EMBEDDING_ALIASES if a in state), None)
        if alias is not None:
            state[SHARED] = state[alias]
    for alias in EMBEDDING_ALIASES:
        if alias in state and not torch.equal(state.pop(alias), state.get(SHARED, torch.empty(0))):
            raise CheckpointError(
                f"{alias} differs from {SHARED}; T5 shares one token embedding across both stacks"
            )
    for key in UNUSED_KEYS:
        if state.pop(key, None) is not None:
            logger.info("ignoring %s (T5 uses no position bias in cross-attention)", key)
    if tied:
        state.pop("lm_head.weight", None)
    mapped, unexpected = {}, []
    for name, tensor in state.items():
        ours = t5_key_to_ours(name)
        if ours is None:
            unexpected.append(name)
        else:
            mapped[ours] = tensor
    if unexpected:
        raise CheckpointError(
            f"checkpoint keys with no place in a T5 model (unexpected): {sorted(unexpected)}"
        )
    return mapped


def model_only_key(name: str) -> bool:
    """Parameters a plain T5 checkpoint does not have: task heads and LoRA adapters."""
    return name.startswith(("topic_head.", "emotion_head.")) or name.endswith((".lora_a", ".lora_b"))


def copy_state(
    model: nn.Module, state: dict[str, torch.Tensor], source: str, allow_model_only_missing: bool = False
) -> None:
    """Copy `state` into `model` after checking that key sets and shapes match exactly."""
    expected = model.state_dict()
    missing = sorted(
        k for k in expected if k not in state and not (allow_model_only_missing and model_only_key(k))
    )
    unexpected = sorted(k for k in state if k not in expected)
    problems = []
    if missing:
        problems.append(f"missing keys: {missing}")
    if unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(state)
        if k in expected and state[k].shape != expected[k].shape
    ]
    if mismatched:
        problems.append(f"shape mismatches: {mismatched}")
    if problems:
        raise CheckpointError(f"cannot load {source}: " + "; ".join(problems))
    with torch.no_grad():
        for name, tensor in state.items():
            expected[name].copy_(tensor)
