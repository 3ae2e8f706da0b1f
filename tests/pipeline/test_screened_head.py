"""The bf16-screened LM head argmax (fp32 CPU decoding): always the full fp32 product's argmax, bit for bit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import model.screened_head as screened_head
from model.fast_decode import GreedyDecoder
from model.screened_head import ScreenedArgmax
from tests.pipeline.decoding_cases import ragged_batch, tiny_model

VOCAB, WIDTH = 4096, 512


def full_argmax(x: torch.Tensor, weight: torch.Tensor, banned: int | None = None) -> torch.Tensor:
    logits = F.linear(x, weight)
    if banned is not None:
        logits[:, banned] = float("-inf")
    return logits.argmax(dim=-1)


@pytest.fixture(scope="module")
def weight() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    # row norms vary (as a trained embedding's do), so the bound's largest-norm stand-in is really tested
    return torch.randn(VOCAB, WIDTH, generator=g) * torch.rand(VOCAB, 1, generator=g) * 0.1


@pytest.mark.parametrize("rows", [1, 3, 8, 17, 32])
def test_equals_the_full_products_argmax(weight, rows):
    screen = ScreenedArgmax(weight)
    g = torch.Generator().manual_seed(rows)
    for trial in range(6):
        x = torch.randn(rows, WIDTH, generator=g) * (10.0 ** (trial % 3))  # scales from 1 to 100
        banned = 1 if trial % 2 else None
        assert screen.argmax(x, banned).tolist() == full_argmax(x, weight, banned).tolist()
    assert not screen.disabled
    assert screen.screened_rows == 6 * rows
    assert screen.candidates / screen.screened_rows < VOCAB / 20  # the screen keeps few tokens


def test_near_ties_and_exact_ties_resolve_as_the_full_product_does(weight):
    """Rivals closer than bf16 can tell apart (the screen ranks them at random, fp32 in a fixed order), and
    exact ties, which go to the lowest token id."""
    w = weight.clone() * 0.01  # every other token's logit near 0
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, WIDTH, generator=g)
    unit = x[0] / torch.linalg.vector_norm(x[0])
    for rank, token in enumerate(range(1000, 1040)):  # logits 1.000, 1.001, ...: token 1039 wins row 0
        # a large part orthogonal to x[0] leaves the logit alone, but its bf16 rounding errors (about
        # 0.04 a logit) are far larger than the rivals' gaps: the screen alone ranks them at random
        side = torch.randn(WIDTH, generator=g)
        side -= (side @ unit) * unit
        w[token] = side * (10 / torch.linalg.vector_norm(side)) + unit * (1 + rank * 1e-3) / x[0].norm()
    w[50] = x[1] * 0.05  # an exact tie for row 1: tokens 50 and 4000 have the same weights
    w[4000] = w[50]
    screen = ScreenedArgmax(w)
    got = screen.argmax(x)
    assert got.tolist() == full_argmax(x, w).tolist()
    assert got[0] == 1039 and got[1] == 50
    low = F.linear(x[:1].bfloat16(), w.bfloat16()).float()[0]
    assert low.argmax() != 1039  # the bf16 screen alone would have picked another token
    assert not screen.disabled


def test_a_kernel_that_rounds_gathered_columns_differently_turns_the_screen_off(weight, monkeypatch):
    """If the BLAS gives gathered columns other bits than the full product, the first check sees it and
    decoding goes on with the full product: still exact, only slower."""
    real_linear = F.linear

    def rounding_differently(x, w, *args):
        out = real_linear(x, w, *args)
        return out + 1e-3 if w.dtype == torch.float32 and w.shape[0] < VOCAB else out

    monkeypatch.setattr(screened_head.F, "linear", rounding_differently)
    screen = ScreenedArgmax(weight)
    x = torch.randn(4, WIDTH, generator=torch.Generator().manual_seed(5))
    assert screen.argmax(x).tolist() == full_argmax(x, weight).tolist()
    assert "round differently" in screen.disabled
    assert screen.argmax(x * 2).tolist() == full_argmax(x * 2, weight).tolist()
    assert screen.screened_rows == 0


def test_a_row_of_nans_takes_the_full_product(weight):
    screen = ScreenedArgmax(weight)
    x = torch.randn(3, WIDTH, generator=torch.Generator().manual_seed(6))
    x[1] = float("nan")
    assert screen.argmax(x).tolist() == full_argmax(x, weight).tolist()
    assert screen.screened_rows == 0


def test_only_for_fp32_on_a_cpu(weight):
    with pytest.raises(ValueError, match="fp32 head on a CPU"):
        ScreenedArgmax(weight.bfloat16())
    model = tiny_model().to(torch.bfloat16)
    with pytest.raises(ValueError, match="fp32 decoding on a CPU"):
        GreedyDecoder(model, screen_head=True)
    assert GreedyDecoder(model).weights.screen is None  # bf16: the plain product (and matmul attention)
    assert GreedyDecoder(model).attention == "matmul"


@pytest.mark.parametrize("min_new_tokens", [0, 9])
def test_decoder_tokens_are_the_same_with_and_without_the_screen(min_new_tokens):
    model = tiny_model()
    ids, mask = ragged_batch()
    outputs = {}
    for screen in (True, False):
        decoder = GreedyDecoder(model, screen_head=screen)
        with torch.no_grad():
            outputs[screen] = decoder.generate(model.encode(ids, mask), mask, 30, min_new_tokens).tolist()
        if screen:
            assert decoder.weights.screen.screened_rows > 0 and not decoder.weights.screen.disabled
        else:
            assert decoder.weights.screen is None
    assert outputs[True] == outputs[False]
