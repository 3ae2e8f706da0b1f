"""Zero-shot labels from the LM: each label is scored as a target sequence given a prompt.

Topic: one prompt listing the options; each label's length-normalised log-likelihood (mean over its tokens,
EOS included), softmax over labels. Emotions are multi-label, so each label gets its own yes/no question and
its probability is P("yes") / (P("yes") + P("no")). This lets a FLAN-T5 checkpoint label documents before
the task heads are trained. The question comes before the text so that truncation only ever cuts the text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.multitask import MultiTaskModel
from model.tokenizer import Tokenizer

TOPIC_PROMPT = "Which topic is this text about? Options: {options}. Text: {text}"
EMOTION_PROMPT = "Does this text express {label}? Answer yes or no. Text: {text}"


@dataclass
class ZeroShotResult:
    scores: dict[str, float]  # label -> probability

    @property
    def best(self) -> str:
        return max(self.scores, key=self.scores.__getitem__)


@torch.no_grad()
def score_targets(
    model: MultiTaskModel, tokenizer: Tokenizer, prompts: list[str], targets: list[str], batch_size: int = 16
) -> torch.Tensor:
    """Mean log-probability of every target after every prompt -> (len(prompts), len(targets))."""
    device = next(model.parameters()).device
    labels = tokenizer.encode_targets(targets, max_length=64).to(device)  # (L, Tt), -100 on padding
    decoder_inputs = tokenizer.shift_right(
        labels, model.config.decoder_start_token_id, model.config.pad_token_id
    )
    valid = labels != -100
    out = torch.empty(len(prompts), len(targets))
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer.batch_encode(prompts[start : start + batch_size])
        ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
        states = model.encode(ids, mask)  # (P, S, D): one encoder pass per prompt
        P, L = ids.shape[0], labels.shape[0]
        rows = torch.arange(P, device=device).repeat_interleave(L)  # every prompt paired with every target
        logits = model.lm_logits(
            ids[rows], mask[rows], decoder_inputs.repeat(P, 1), encoder_states=states[rows]
        ).float()  # (P*L, Tt, V)
        token_logp = F.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).repeat(P, 1).unsqueeze(-1))
        token_logp = token_logp.squeeze(-1) * valid.repeat(P, 1)  # (P*L, Tt)
        mean_logp = token_logp.sum(-1) / valid.sum(-1).repeat(P)
        out[start : start + P] = mean_logp.view(P, L).cpu()
    return out


def zero_shot_topics(
    model: MultiTaskModel, tokenizer: Tokenizer, texts: list[str], labels: list[str] | tuple[str, ...]
) -> list[ZeroShotResult]:
    options = ", ".join(labels)
    prompts = [TOPIC_PROMPT.format(options=options, text=text) for text in texts]
    probabilities = torch.softmax(score_targets(model, tokenizer, prompts, list(labels)), dim=-1)
    return [ZeroShotResult(dict(zip(labels, row.tolist(), strict=True))) for row in probabilities]


def zero_shot_emotions(
    model: MultiTaskModel, tokenizer: Tokenizer, texts: list[str], labels: list[str] | tuple[str, ...]
) -> list[ZeroShotResult]:
    prompts = [EMOTION_PROMPT.format(label=label, text=text) for text in texts for label in labels]
    yes_no = score_targets(model, tokenizer, prompts, ["yes", "no"])  # (N*L, 2)
    p_yes = torch.softmax(yes_no, dim=-1)[:, 0].view(len(texts), len(labels))
    return [ZeroShotResult(dict(zip(labels, row.tolist(), strict=True))) for row in p_yes]
