"""Classification heads on pooled encoder states: topic (softmax, one label) and emotion (sigmoid, many).

The LM head is not here: it is either the token embedding matrix (tied) or a plain linear layer, and
``MultiTaskModel.project_to_vocab`` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.config import ModelConfig
from model.layers import Dropout


class MeanPooling(nn.Module):
    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """states (B, T, D), mask (B, T) -> (B, D): average over real tokens only."""
        weights = mask.to(states.dtype).unsqueeze(-1)  # (B, T, 1)
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class AttentionPooling(nn.Module):
    """Learned attention pooling: one score per token, softmax over real tokens, weighted sum."""

    def __init__(self, d_model: int):
        super().__init__()
        self.score = nn.Linear(d_model, 1)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(states).squeeze(-1)  # (B, T)
        scores = scores.masked_fill(~mask.bool(), torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores.float(), dim=-1).to(states.dtype)  # (B, T)
        return torch.einsum("bt,btd->bd", weights, states)


class ClassificationHead(nn.Module):
    def __init__(self, config: ModelConfig, num_labels: int):
        super().__init__()
        self.pool = MeanPooling() if config.pooling == "mean" else AttentionPooling(config.d_model)
        self.dropout = Dropout(config.dropout_rate)
        self.proj = nn.Linear(config.d_model, num_labels)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """states (B, T, D), mask (B, T) -> logits (B, num_labels)."""
        return self.proj(self.dropout(self.pool(states, mask)))


@dataclass
class ClassifierOutput:
    topic_logits: torch.Tensor | None  # (B, n_topics); softmax gives the topic distribution
    emotion_logits: torch.Tensor | None  # (B, n_emotions); sigmoid gives independent label scores

    def topic_probabilities(self, temperature: float = 1.0) -> torch.Tensor | None:
        """softmax(logits / temperature): a trained version's labels.json carries the temperature fitted on
        its dev split (calibration; the argmax is unchanged)."""
        if self.topic_logits is None:
            return None
        return torch.softmax(self.topic_logits.float() / temperature, dim=-1)

    def emotion_probabilities(self) -> torch.Tensor | None:
        return None if self.emotion_logits is None else torch.sigmoid(self.emotion_logits.float())
