"""T5 encoder stack: pre-norm self-attention + feed-forward blocks sharing one bidirectional position bias."""

from __future__ import annotations

import torch
from torch import nn

from model.attention import MultiHeadAttention, RelativePositionBias, masked_bias
from model.config import ModelConfig
from model.layers import Dropout, RMSNorm, build_feed_forward


class EncoderBlock(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.attn = MultiHeadAttention(config)
        self.ff_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.ff = build_feed_forward(config)
        self.dropout = Dropout(config.dropout_rate)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        h = self.attn_norm(x)
        x = x + self.dropout(self.attn(h, self.attn.project_key_value(h), bias))
        return x + self.dropout(self.ff(self.ff_norm(x)))


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        # T5 keeps this table in block 0; it lives here because every block uses it
        self.relative_bias = RelativePositionBias(config, bidirectional=True)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.num_layers))
        self.final_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = Dropout(config.dropout_rate)

    def forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """embeds (B, T, d_model), attention_mask (B, T) (1 = token, 0 = padding) -> (B, T, d_model)."""
        _, T, _ = embeds.shape
        positions = torch.arange(T, device=embeds.device)
        key_mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        bias = masked_bias(key_mask, self.relative_bias(positions, positions), embeds.dtype)  # (B, H, T, T)
        x = self.dropout(embeds)
        for block in self.blocks:
            x = block(x, bias)
        return self.dropout(self.final_norm(x))
