"""Multi-head attention with T5's relative position bias.

T5 specifics: no 1/sqrt(d) scaling (it is folded into the initialisation), a learned bias per head and
relative-distance bucket added to the scores (bidirectional buckets in the encoder, causal in the decoder,
computed once per stack and shared by every layer, none in cross-attention).

Masks are boolean (True = may attend) and become an additive bias filled with ``finfo(dtype).min`` by
``masked_bias``, never with -1e4 or -inf: the fill is exactly representable in bf16 and fp16, and a fully
masked row still softmaxes to finite values instead of NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.lora import projection


@dataclass
class KeyValue:
    key: torch.Tensor  # (B, H, T, d_kv)
    value: torch.Tensor  # (B, H, T, d_kv)

    def index_select(self, rows: torch.Tensor) -> KeyValue:
        return KeyValue(self.key.index_select(0, rows), self.value.index_select(0, rows))


def relative_position_bucket(
    relative_position: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int
) -> torch.Tensor:
    """Map key_position - query_position to a bucket: exact buckets for small distances, log-spaced up to
    max_distance, one bucket beyond. Bidirectional splits the buckets between the two directions; causal
    (decoder) only looks back, so future positions all land in bucket 0."""
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).to(torch.long) * num_buckets
        distance = relative_position.abs()
    else:
        distance = -torch.clamp(relative_position, max=0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # log(0) is -inf for distance 0, but those positions take the is_small branch
    log_ratio = torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).to(torch.long)
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class RelativePositionBias(nn.Module):
    def __init__(self, config: ModelConfig, bidirectional: bool):
        super().__init__()
        self.bidirectional = bidirectional
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self.embedding = nn.Embedding(self.num_buckets, config.num_heads)

    def forward(self, query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
        """query_positions (Tq,), key_positions (Tk,) -> bias (1, H, Tq, Tk)."""
        relative = key_positions[None, :] - query_positions[:, None]  # (Tq, Tk)
        buckets = relative_position_bucket(relative, self.bidirectional, self.num_buckets, self.max_distance)
        return self.embedding(buckets).permute(2, 0, 1).unsqueeze(0)


def masked_bias(mask: torch.Tensor, position_bias: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """mask: bool, broadcastable to (B, H, Tq, Tk), True where attention is allowed.
    Returns the additive score bias: position_bias (or 0) where allowed, finfo(dtype).min elsewhere."""
    blocked = torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=mask.device)
    allowed = (
        torch.zeros((), dtype=dtype, device=mask.device) if position_bias is None else position_bias.to(dtype)
    )
    return torch.where(mask, allowed, blocked)


class MultiHeadAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.d_kv = config.d_kv
        inner = config.num_heads * config.d_kv
        self.q = projection(config.d_model, inner, config.lora_rank, config.lora_alpha)
        self.k = projection(config.d_model, inner, config.lora_rank, config.lora_alpha)
        self.v = projection(config.d_model, inner, config.lora_rank, config.lora_alpha)
        self.o = projection(inner, config.d_model, config.lora_rank, config.lora_alpha)
        self.dropout = config.dropout_rate

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.d_kv).transpose(1, 2)  # (B, H, T, d_kv)

    def project_key_value(self, source: torch.Tensor) -> KeyValue:
        """source (B, S, d_model) -> keys and values (B, H, S, d_kv)."""
        return KeyValue(self._split_heads(self.k(source)), self._split_heads(self.v(source)))

    def forward(self, x: torch.Tensor, kv: KeyValue, bias: torch.Tensor) -> torch.Tensor:
        """x (B, Tq, d_model) attends over kv (B, H, Tk, d_kv); bias broadcastable to (B, H, Tq, Tk)."""
        B, Tq, _ = x.shape
        q = self._split_heads(self.q(x))  # (B, H, Tq, d_kv)
        out = F.scaled_dot_product_attention(
            q,
            kv.key,
            kv.value,
            attn_mask=bias.to(q.dtype),
            dropout_p=self.dropout if self.training else 0.0,
            scale=1.0,  # T5 does not scale scores by 1/sqrt(d_kv)
        )  # (B, H, Tq, d_kv)
        return self.o(out.transpose(1, 2).reshape(B, Tq, self.num_heads * self.d_kv))
