"""Exact greedy argmax over the LM head for fp32 decoding on a CPU, at about a quarter of the cost.

At a CPU decoding step the LM head is the largest matrix product (T5-small: 8 x 512 by 512 x 32128, 66 MB
of fp32 weights, 6.8 ms of a 17 ms step on two cores), and fp32 GEMM with 8 rows reaches only a fifth of the
memory bandwidth here, while the same product in bf16 takes 1.2 ms. Greedy decoding needs only the argmax,
so ``ScreenedArgmax`` screens in bf16 and decides in fp32:

1. ``low = bf16(x) @ bf16(W).T`` for the whole vocabulary;
2. every logit's distance from its exact fp32 value is bounded:
   ``|fl32(x . w_v) - low_v| <= c * ||x|| * ||w_v|| <= slack = c * ||x|| * max_v ||w_v||``, ``c = 2**-6``.
   Rounding x and w_v to bf16 (unit roundoff u = 2**-8) moves the dot product by at most
   ``(2u + u**2) * sum|x_i||w_vi|``, the fp32 sums (both sides, 512 terms) by about ``3e-5`` of it, and
   rounding the result to bf16 by ``u`` of it: about 0.0118 of ``sum|x_i||w_vi| <= ||x|| ||w_v||``
   (Cauchy-Schwarz) in all, so c leaves a third to spare;
3. so the true argmax t has ``low_t >= L_t - slack >= L_v - slack >= low_v - 2 * slack`` for every v: the
   candidates of a row are the tokens within ``2 * slack`` of its best screen value (t and anything tied
   with it among them);
4. the candidates' logits are computed in fp32 with the very kernel the full product uses, and the argmax
   is taken among them (ties to the lowest token id, like ``torch.argmax`` over the whole row).

Step 4 must give the same bits as the full product would. MKL's fp32 GEMM computes each output as the same
sequence of fused multiply-adds whatever the number of output columns, once that number is a multiple of 16
(a few columns take another code path); candidates are therefore padded to a multiple of 16. That is the
library's behaviour, not a promise, so each new (rows, columns) shape is checked once against the full
product; a mismatch turns the screen off for good (``disabled`` says why) and decoding goes on with the
full product. Typical screens keep a few dozen of 32,128 tokens.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from model.logits_rules import ban_completions

logger = logging.getLogger(__name__)

# bound on |fp32 logit - bf16 screen logit| per unit of ||x|| * ||w_v|| (0.0118 derived above, rounded up)
SCREEN_MARGIN = 2.0**-6
COLUMN_MULTIPLE = 16


class ScreenedArgmax:
    """argmax(x @ weight.T) per row, bitwise what the full fp32 product gives, for an fp32 weight on a CPU."""

    def __init__(self, weight: torch.Tensor, margin: float = SCREEN_MARGIN):
        if weight.dtype != torch.float32 or weight.device.type != "cpu":
            raise ValueError(f"the screen is for an fp32 head on a CPU, got {weight.dtype} on {weight.device}")
        self.weight = weight
        self.low = weight.to(torch.bfloat16)
        self.max_row_norm = float(torch.linalg.vector_norm(weight, dim=1).max())
        self.margin = margin
        self.disabled = ""  # why the screen was turned off, if it was
        self._checked: set[tuple[int, int]] = set()
        self.screened_rows = 0  # rows decided by the screen
        self.candidates = 0  # candidate tokens summed over those rows

    @torch.no_grad()
    def argmax(
        self, x: torch.Tensor, banned: int | None = None, bans: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """x (B, d) fp32 -> (B,) token ids; `banned`: a token no row may pick; `bans`: the (matches,
        completions) of ``model.logits_rules.repeated_ngrams``, tokens each row may not pick (their
        logits count as -inf)."""
        if self.disabled:
            return self._full(x, banned, bans).argmax(dim=-1)
        low = F.linear(x.to(torch.bfloat16), self.low).float()  # (B, V)
        if bans is not None:
            ban_completions(low, *bans, inplace=True)
        if banned is not None:
            low[:, banned] = float("-inf")
        # every logit is within `slack` of its screen value (the largest row norm stands in for each)
        slack = (self.margin * self.max_row_norm) * torch.linalg.vector_norm(x, dim=1, keepdim=True)  # (B, 1)
        best = low.amax(dim=1, keepdim=True)
        is_candidate = low >= best - 2 * slack  # NaN leaves a row without any
        counts = is_candidate.sum(dim=1)
        if bool((counts == 0).any()) or not bool(torch.isfinite(best).all()):  # NaN, or every token banned
            return self._full(x, banned, bans).argmax(dim=-1)
        columns = is_candidate.any(dim=0).nonzero().squeeze(1)  # ascending token ids
        padded = -(-columns.numel() // COLUMN_MULTIPLE) * COLUMN_MULTIPLE
        columns = torch.cat([columns, columns[:1].expand(padded - columns.numel())])  # repeats sort last
        exact = F.linear(x, self.weight.index_select(0, columns))  # (B, n): the full product's bits
        if not self._agrees(x, columns, exact):
            return self._full(x, banned, bans).argmax(dim=-1)
        exact = exact.masked_fill(~is_candidate[:, columns], float("-inf"))
        self.screened_rows += x.shape[0]
        self.candidates += int(counts.sum())
        return columns[exact.argmax(dim=-1)]  # first maximum = lowest token id among ties

    def _full(
        self, x: torch.Tensor, banned: int | None, bans: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        logits = F.linear(x, self.weight)
        if bans is not None:
            ban_completions(logits, *bans, inplace=True)
        if banned is not None:
            logits[:, banned] = float("-inf")
        return logits

    def _agrees(self, x: torch.Tensor, columns: torch.Tensor, exact: torch.Tensor) -> bool:
        """Once per (rows, columns) shape: do the gathered columns hold the full product's bits?"""
        shape = tuple(exact.shape)
        if shape in self._checked:
            return True
        if not torch.equal(exact, F.linear(x, self.weight)[:, columns]):
            self.disabled = f"gathered columns round differently from the full product at {shape}"
            logger.warning("LM head screen off: %s", self.disabled)
            return False
        self._checked.add(shape)
        return True
