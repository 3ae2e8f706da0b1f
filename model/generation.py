"""Greedy and beam-search decoding with a KV cache, token-for-token equal to transformers' ``generate``.

Both loops reproduce transformers' semantics (``early_stopping=False`` beam search): the same score rules
(``model.logits_rules``), the same stopping tests, the same tie-breaking. Rows (greedy) and documents (beam
search) leave the batch as soon as their output can no longer change, so the cache shrinks as decoding goes.
Outputs exclude the decoder start token; every position after a row's end holds the pad id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from model.logits_rules import GenerationSettings, apply_rules

if TYPE_CHECKING:
    from model.multitask import MultiTaskModel

__all__ = ["GenerationSettings", "generate", "greedy_search", "beam_search"]

_NEG = -1.0e9  # transformers' "impossible" beam score; kept identical so ties break the same way


@torch.no_grad()
def generate(
    model: MultiTaskModel,
    input_ids: torch.Tensor,  # (B, S)
    attention_mask: torch.Tensor | None,  # (B, S)
    settings: GenerationSettings,
    encoder_states: torch.Tensor | None = None,  # (B, S, d_model): reuse an encoder pass
) -> torch.Tensor:
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if encoder_states is None:
        encoder_states = model.encode(input_ids, attention_mask)
    if settings.num_beams == 1:
        return greedy_search(model, encoder_states, attention_mask, settings)
    return beam_search(model, encoder_states, attention_mask, settings)


def greedy_search(
    model: MultiTaskModel,
    encoder_states: torch.Tensor,
    attention_mask: torch.Tensor,
    settings: GenerationSettings,
) -> torch.Tensor:
    cfg = model.config
    B, device = encoder_states.shape[0], encoder_states.device
    history = torch.full((B, settings.max_new_tokens + 1), cfg.pad_token_id, dtype=torch.long, device=device)
    history[:, 0] = cfg.decoder_start_token_id
    cache = model.start_decoding(encoder_states, attention_mask)
    active = torch.arange(B, device=device)  # batch rows still decoding, in cache order
    steps = 0
    for step in range(settings.max_new_tokens):
        logits = model.decode_step(history[active, step : step + 1], cache).float()  # (A, V)
        scores = apply_rules(logits, history[active, : step + 1], settings, cfg.eos_token_id)
        next_tokens = scores.argmax(dim=-1)  # (A,)
        history[active, step + 1] = next_tokens
        steps = step + 1
        running = next_tokens != cfg.eos_token_id
        if not running.any():
            break
        if not running.all():  # finished rows leave the batch
            keep = running.nonzero().squeeze(1)
            active = active[keep]
            cache.select_rows(keep)
    return history[:, 1 : steps + 1]


def beam_search(
    model: MultiTaskModel,
    encoder_states: torch.Tensor,
    attention_mask: torch.Tensor,
    settings: GenerationSettings,
) -> torch.Tensor:
    cfg = model.config
    K, lp = settings.num_beams, settings.length_penalty
    B, device = encoder_states.shape[0], encoder_states.device
    max_length = settings.max_new_tokens + 1  # counts the decoder start token, as transformers does
    cache = model.start_decoding(
        encoder_states.repeat_interleave(K, 0), attention_mask.repeat_interleave(K, 0)
    )

    # state of the documents still searching (A of them), beams flattened as rows item * K + beam
    items = torch.arange(B, device=device)
    running = torch.full((B, K, max_length), cfg.pad_token_id, dtype=torch.long, device=device)
    running[:, :, 0] = cfg.decoder_start_token_id
    running_scores = torch.zeros((B, K), device=device)
    running_scores[:, 1:] = _NEG  # all beams start identical: only the first one may expand at step one
    finished = running.clone()
    finished_scores = torch.full((B, K), _NEG, device=device)
    finished_lengths = torch.zeros((B, K), dtype=torch.long, device=device)
    is_finished = torch.zeros((B, K), dtype=torch.bool, device=device)
    improvable = torch.ones((B, 1), dtype=torch.bool, device=device)
    top_k_mask = torch.arange(2 * K, device=device) < K  # only the best K candidates may finish

    output = torch.full((B, settings.max_new_tokens), cfg.pad_token_id, dtype=torch.long, device=device)
    output_lengths = torch.zeros(B, dtype=torch.long, device=device)

    def emit(done: torch.Tensor) -> None:  # write the best finished hypothesis of each done document
        for row in done.nonzero().squeeze(1).tolist():
            length = int(finished_lengths[row, 0])
            output[items[row], :length] = finished[row, 0, 1 : length + 1]
            output_lengths[items[row]] = length

    cur_len = 1
    while True:
        A = items.shape[0]
        flat = running[:, :, :cur_len].reshape(A * K, cur_len)
        log_probs = F.log_softmax(model.decode_step(flat[:, -1:], cache).float(), dim=-1)  # (A*K, V)
        log_probs = apply_rules(log_probs, flat, settings, cfg.eos_token_id)
        vocab = log_probs.shape[-1]
        totals = (log_probs.view(A, K, vocab) + running_scores[:, :, None]).view(A, K * vocab)

        cand_scores, cand_index = torch.topk(totals, k=2 * K)  # (A, 2K)
        cand_beam, cand_token = cand_index // vocab, cand_index % vocab
        cand_seqs = _gather(running, cand_beam)  # (A, 2K, max_length)
        cand_seqs[:, :, cur_len] = cand_token
        hits = (cand_token == cfg.eos_token_id) | (cur_len + 1 >= max_length)  # (A, 2K)

        # the best K candidates that did not stop keep running
        run_scores = cand_scores + hits.to(torch.float32) * _NEG
        keep_index = torch.topk(run_scores, k=K)[1]  # (A, K)
        running = _gather(cand_seqs, keep_index)
        running_scores = _gather(run_scores, keep_index)
        parents = _gather(cand_beam, keep_index)  # (A, K) beam each new running beam came from

        # candidates in the top K that stopped compete with the finished hypotheses
        just_finished = hits & top_k_mask[None, :]
        fin_scores = cand_scores / ((cur_len + 1 - 1) ** lp)
        fin_scores = fin_scores + (~improvable).to(torch.float32) * _NEG
        fin_scores = fin_scores + (~just_finished) * _NEG
        merged_scores = torch.cat((finished_scores, fin_scores), dim=1)
        best = torch.topk(merged_scores, k=K)[1]
        finished = _gather(torch.cat((finished, cand_seqs), dim=1), best)
        finished_scores = _gather(merged_scores, best)
        cand_lengths = torch.full_like(cand_token, cur_len)
        finished_lengths = _gather(torch.cat((finished_lengths, cand_lengths), dim=1), best)
        is_finished = _gather(torch.cat((is_finished, just_finished), dim=1), best)

        cur_len += 1
        best_running = running_scores[:, :1] / ((cur_len - 1) ** lp)
        worst_finished = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True)[0], _NEG)
        improvable = improvable & (best_running > worst_finished).any(dim=-1, keepdim=True)

        searching = improvable.squeeze(1)
        if bool(hits.all()) or not searching.any():
            emit(torch.ones_like(searching))
            break
        rows = parents + torch.arange(A, device=device)[:, None] * K  # (A, K) cache row of each parent
        if not searching.all():  # documents whose best output is settled leave the batch
            emit(~searching)
            keep = searching.nonzero().squeeze(1)
            items, rows = items[keep], rows[keep]
            running, running_scores = running[keep], running_scores[keep]
            finished, finished_scores = finished[keep], finished_scores[keep]
            finished_lengths, is_finished, improvable = (
                finished_lengths[keep],
                is_finished[keep],
                improvable[keep],
            )
        cache.select_rows(rows.reshape(-1))
    return output[:, : int(output_lengths.max())]


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tensor (A, N, ...) indexed along dim 1 by index (A, M) -> (A, M, ...)."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(tensor, index, dim=1)
