"""One greedy decoding step on a static cache, and the fused decoder weights it reads.

``decode_step`` runs every row's step entirely on the device and in place (a device-side step counter,
``index_copy_`` into the cache, no host reads), so it can be captured in a CUDA graph
(``model.step_graphs``) and replayed; ``GreedyDecoder`` (``model.fast_decode``) drives it.

In fp32 the numerics are those of ``MultiTaskModel.decode_step`` (same norm modules, biases and masks); in
bf16 the step is "lean" (fused RMSNorm, residual adds in the matmul epilogue, no all-zero masks), which
rounds differently in the last bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.attention import masked_bias
from model.layers import RMSNorm
from model.logits_rules import ban_completions, repeated_ngrams
from model.lora import LoRALinear
from model.multitask import MultiTaskModel
from model.screened_head import ScreenedArgmax
from model.static_cache import StaticDecodeCache

ATTENTION_KINDS = ("sdpa", "matmul")


@dataclass(frozen=True)
class OutputRules:
    """What a decoding call forbids (part of a captured step's key): EOS before `min_new_tokens`, and with
    `no_repeat_ngram_size` > 0 any token that would repeat an n-gram of the output, start token included
    (``model.logits_rules``, transformers' semantics)."""

    min_new_tokens: int = 0
    no_repeat_ngram_size: int = 0


def _weight(linear: torch.nn.Linear) -> torch.Tensor:
    return linear.merged_weight() if isinstance(linear, LoRALinear) else linear.weight.detach()


def _fuse(linears: list[torch.nn.Linear], share: bool) -> torch.Tensor:
    """The weights stacked along the output dimension; with `share`, each module's weight then becomes a
    view into the stack (same values, one copy in memory)."""
    fused = torch.cat([_weight(linear) for linear in linears])
    if share and not any(isinstance(linear, LoRALinear) for linear in linears):
        offset = 0
        for linear in linears:
            rows = linear.weight.shape[0]
            linear.weight.data = fused[offset : offset + rows]
            offset += rows
    return fused


@dataclass
class LayerWeights:
    self_norm: RMSNorm
    self_qkv: torch.Tensor  # (3 * inner, d_model)
    self_out: torch.Tensor  # (d_model, inner)
    cross_norm: RMSNorm
    cross_q: torch.Tensor  # (inner, d_model)
    cross_kv: torch.Tensor  # (2 * inner, d_model): applied once to the encoder states
    cross_out: torch.Tensor  # (d_model, inner)
    ff_norm: RMSNorm
    ff_in: torch.Tensor  # (2 * d_ff, d_model) gated (wi_0 | wi_1), (d_ff, d_model) plain
    ff_out: torch.Tensor  # (d_model, d_ff)


class DecoderWeights:
    """The decoder's weights, fused per layer, read from (and sharing norms with) a MultiTaskModel.

    On CUDA the model's own projection weights become views into the fused tensors, so fusing costs no
    memory (146 MB at FLAN-T5-base in bf16). On a CPU they stay separate copies: a CPU model may still be
    saved, and safetensors refuses tensors that share memory. LoRA projections are merged into copies.
    """

    @torch.no_grad()
    def __init__(self, model: MultiTaskModel):
        cfg = model.config
        self.heads, self.head_dim = cfg.num_heads, cfg.d_kv
        self.gated = cfg.is_gated
        self.scale = cfg.d_model**-0.5 if cfg.scale_decoder_outputs else None
        self.embedding = model.token_embedding.weight.detach()
        self.lm_head = self.embedding if model.lm_head is None else model.lm_head.weight.detach()
        self.final_norm = model.decoder.final_norm
        self.relative_bias = model.decoder.relative_bias
        self.screen: ScreenedArgmax | None = None  # exact argmax via a bf16 screen (fp32 on a CPU)
        share = self.embedding.device.type == "cuda"
        self.layers = []
        for block in model.decoder.blocks:
            sa, ca, ff = block.self_attn, block.cross_attn, block.ff
            self.layers.append(
                LayerWeights(
                    self_norm=block.self_attn_norm,
                    self_qkv=_fuse([sa.q, sa.k, sa.v], share),
                    self_out=_weight(sa.o),
                    cross_norm=block.cross_attn_norm,
                    cross_q=_weight(ca.q),
                    cross_kv=_fuse([ca.k, ca.v], share),
                    cross_out=_weight(ca.o),
                    ff_norm=block.ff_norm,
                    ff_in=_fuse([ff.wi_0, ff.wi_1], share) if self.gated else _weight(ff.wi),
                    ff_out=_weight(ff.wo),
                )
            )

    def cross_key_values(self, encoder_states: torch.Tensor) -> Iterator[torch.Tensor]:
        """encoder_states (B, S, d_model) -> per layer (2, B, H, S, d_kv), one layer at a time (so only one
        layer's projection is ever held outside the cache)."""
        B, S, _ = encoder_states.shape
        for layer in self.layers:
            kv = F.linear(encoder_states, layer.cross_kv)  # (B, S, 2 * H * d_kv)
            yield kv.view(B, S, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)

    def self_bias_table(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        """(T, H, T): row p is the self-attention bias of query position p, causal mask folded in."""
        positions = torch.arange(length, device=self.embedding.device)
        causal = (positions[None, :] <= positions[:, None])[None, None]  # (1, 1, T, T)
        bias = masked_bias(causal, self.relative_bias(positions, positions), dtype)  # (1, H, T, T)
        return bias[0].transpose(0, 1).contiguous()


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, kind: str
) -> torch.Tensor:
    """q (B, H, 1, D) over k, v (B, H, T, D) with an additive bias (None: attend to all); T5 does not scale
    the scores."""
    if kind == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
    scores = torch.matmul(q, k.transpose(-1, -2)).float()  # (B, H, 1, T)
    if bias is not None:
        scores = scores + bias
    return torch.matmul(torch.softmax(scores, dim=-1).to(v.dtype), v)


def _norm(module: RMSNorm, x: torch.Tensor, lean: bool) -> torch.Tensor:
    if lean:  # one kernel where torch has a fused RMSNorm; rounds once instead of twice in bf16
        return F.rms_norm(x, (x.shape[-1],), module.weight, module.eps)
    return module(x)


def _add_projection(
    residual: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, lean: bool
) -> torch.Tensor:
    """residual + x @ weight.T; lean: the add happens in the matmul's epilogue (one kernel, one rounding)."""
    if lean:
        return torch.addmm(residual, x, weight.t())
    return residual + F.linear(x, weight)


@torch.no_grad()
def decode_step(
    w: DecoderWeights,
    cache: StaticDecodeCache,
    bias_table: torch.Tensor,  # (T, H, T) from DecoderWeights.self_bias_table
    rows: int,  # the step runs on cache rows [0, rows)
    key_len: int,  # self-attention keys read: >= step + 1 (unwritten slots are masked by the table)
    source_len: int,  # cross-attention keys read
    eos_token_id: int,
    rules: OutputRules,
    attention: str,
    lean: bool = False,  # fewer kernels, bf16 rounding differs slightly from the reference (see GreedyDecoder)
    cross_masked: bool = True,  # False when no row has encoder padding: attention without a mask
    start_token_id: int = 0,  # the decoder start token, the first token of the sequence the n-grams see
) -> None:
    """One greedy step for every row, entirely on the device and in place (capturable in a CUDA graph)."""
    H, D = w.heads, w.head_dim
    step = cache.step  # (1,) position of the token produced now
    x = F.embedding(cache.tokens[:rows], w.embedding)  # (B, d_model)
    self_bias = bias_table.index_select(0, step)[:, :, None, :key_len]  # (1, H, 1, Tk)
    cross_bias = cache.cross_bias[:rows, :, :, :source_len] if cross_masked else None  # (B, 1, 1, S)
    for layer, lw in enumerate(w.layers):
        # self-attention: write this position's K/V into the cache, attend over the written prefix
        qkv = F.linear(_norm(lw.self_norm, x, lean), lw.self_qkv).view(rows, 3, H, 1, D)
        q, k, v = qkv.unbind(1)  # (B, H, 1, D) each
        keys, values = cache.self_kv[layer, 0, :rows], cache.self_kv[layer, 1, :rows]  # (B, H, T, D)
        keys.index_copy_(2, step, k)
        values.index_copy_(2, step, v)
        attn = _attend(q, keys[:, :, :key_len], values[:, :, :key_len], self_bias, attention)
        x = _add_projection(x, attn.reshape(rows, H * D), lw.self_out, lean)
        # cross-attention over the encoder K/V computed once
        q = F.linear(_norm(lw.cross_norm, x, lean), lw.cross_q).view(rows, H, 1, D)
        keys = cache.cross_kv[layer, 0, :rows, :, :source_len]
        values = cache.cross_kv[layer, 1, :rows, :, :source_len]
        attn = _attend(q, keys, values, cross_bias, attention)
        x = _add_projection(x, attn.reshape(rows, H * D), lw.cross_out, lean)
        # feed-forward
        hidden = F.linear(_norm(lw.ff_norm, x, lean), lw.ff_in)
        if w.gated:
            gate, up = hidden.chunk(2, dim=-1)
            hidden = F.gelu(gate, approximate="tanh") * up
        else:
            hidden = F.relu(hidden)
        x = _add_projection(x, hidden, lw.ff_out, lean)
    x = _norm(w.final_norm, x, lean)
    if w.scale is not None:
        x = x * w.scale
    min_new_tokens, ngram = rules.min_new_tokens, rules.no_repeat_ngram_size
    bans = None
    if ngram > 0:  # the sequence the rule sees: the start token, then the tokens generated before this step
        bans = repeated_ngrams(F.pad(cache.out[:rows], (1, 0), value=start_token_id), step + 1, ngram)
    if w.screen is not None:  # eager only (it reads the step counter and picks columns on the host)
        eos_banned = eos_token_id if min_new_tokens > 0 and int(step) < min_new_tokens else None
        next_tokens = w.screen.argmax(x, eos_banned, bans)
    else:
        logits = F.linear(x, w.lm_head)  # (B, V)
        if bans is not None:
            ban_completions(logits, *bans, inplace=True)
        if min_new_tokens > 0:
            logits[:, eos_token_id].masked_fill_(step < min_new_tokens, float("-inf"))
        if logits.device.type == "cpu":
            logits = logits.float()  # a bf16 argmax on a CPU takes 5x as long as converting first
        next_tokens = logits.argmax(dim=-1)
    finished = cache.finished[:rows]
    next_tokens.masked_fill_(finished, cache.pad_token_id)  # (B,)
    cache.out[:rows].index_copy_(1, step, next_tokens[:, None])
    finished |= next_tokens == eos_token_id
    cache.tokens[:rows].copy_(next_tokens)
    step += 1
