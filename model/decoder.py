"""T5 decoder stack: causal self-attention (cached), cross-attention over the encoder, feed-forward."""

from __future__ import annotations

import torch
from torch import nn

from model.attention import KeyValue, MultiHeadAttention, RelativePositionBias, masked_bias
from model.config import ModelConfig
from model.kv_cache import SelfAttentionCache
from model.layers import Dropout, RMSNorm, build_feed_forward


class DecoderBlock(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.self_attn_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.self_attn = MultiHeadAttention(config)
        self.cross_attn_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.cross_attn = MultiHeadAttention(config)
        self.ff_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.ff = build_feed_forward(config)
        self.dropout = Dropout(config.dropout_rate)

    def forward(
        self,
        x: torch.Tensor,  # (B, Tq, d_model)
        self_bias: torch.Tensor,  # (1, H, Tq, Tk) position bias with the causal mask folded in
        cross: KeyValue,  # (B, H, S, d_kv)
        cross_bias: torch.Tensor,  # (B, 1, 1, S) encoder padding mask as a bias
        cache: SelfAttentionCache | None,  # any cache with update(); None: attend over this input only
        layer: int,
        positions: torch.Tensor,  # (Tq,) absolute positions of x
    ) -> torch.Tensor:
        h = self.self_attn_norm(x)
        self_kv = self.self_attn.project_key_value(h)  # (B, H, Tq, d_kv)
        if cache is not None:
            self_kv = cache.update(layer, self_kv, positions)  # (B, H, Tk, d_kv)
        x = x + self.dropout(self.self_attn(h, self_kv, self_bias))
        x = x + self.dropout(self.cross_attn(self.cross_attn_norm(x), cross, cross_bias))
        return x + self.dropout(self.ff(self.ff_norm(x)))


class Decoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.relative_bias = RelativePositionBias(config, bidirectional=False)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.num_decoder_layers))
        self.final_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = Dropout(config.dropout_rate)

    def cross_key_values(self, encoder_states: torch.Tensor) -> list[KeyValue]:
        """Cross-attention K/V for every layer, (B, H, S, d_kv) each: computed once per document."""
        return [block.cross_attn.project_key_value(encoder_states) for block in self.blocks]

    def forward(
        self,
        embeds: torch.Tensor,  # (B, Tq, d_model) embedded decoder input ids
        cross: list[KeyValue],
        encoder_mask: torch.Tensor,  # (B, S), 1/True for real encoder tokens
        cache: SelfAttentionCache | None = None,
        positions: torch.Tensor | None = None,  # (Tq,) absolute positions of the inputs
    ) -> torch.Tensor:
        _, Tq, _ = embeds.shape
        device, dtype = embeds.device, embeds.dtype
        past = cache.past_length if cache is not None else 0
        if positions is None:
            positions = torch.arange(past, past + Tq, device=device)
        key_length = cache.key_length(Tq) if cache is not None else Tq
        key_positions = torch.arange(key_length, device=device)
        causal = (key_positions[None, :] <= positions[:, None])[None, None]  # (1, 1, Tq, Tk)
        self_bias = masked_bias(causal, self.relative_bias(positions, key_positions), dtype)
        cross_bias = masked_bias(encoder_mask.bool()[:, None, None, :], None, dtype)  # (B, 1, 1, S)

        x = self.dropout(embeds)
        for i, block in enumerate(self.blocks):
            x = block(x, self_bias, cross[i], cross_bias, cache, i, positions)
        return self.dropout(self.final_norm(x))
