"""Fixtures for the model tests: tiny random T5 checkpoints written by transformers, and the real tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from leximind.config import SHARED_DATA

VOCAB = 96
EOS = 1


@dataclass
class HFCheckpoint:
    reference: torch.nn.Module  # transformers' T5ForConditionalGeneration holding the same weights
    folder: Path  # config.json + model.safetensors, as a transformers checkpoint


def write_t5_checkpoint(
    folder: Path,
    feed_forward_proj: str,
    untied: bool,
    seed: int,
    eos_boost: float,
    num_decoder_layers: int = 2,
) -> HFCheckpoint:
    """A tiny random T5 from transformers, saved by hand so an untied lm_head survives (transformers 5
    forces tie_word_embeddings=True on T5Config and would drop it).

    transformers' init makes tiny models emit one token forever; larger projections, random norm scales and
    a stronger EOS row (seeds picked by hand) give varied outputs where some rows stop early and some don't.
    """
    from safetensors.torch import save_file
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    kwargs = dict(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=8,
        d_ff=48,
        num_layers=2,
        num_decoder_layers=num_decoder_layers,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        feed_forward_proj=feed_forward_proj,
        dropout_rate=0.0,
        decoder_start_token_id=0,
    )
    if untied:
        kwargs["tie_word_embeddings"] = False  # v1.1 / FLAN: no rescaling before the head
    reference = T5ForConditionalGeneration(T5Config(**kwargs)).eval()
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if param.dim() == 2 and "shared" not in name and "relative" not in name:
                param.mul_(3.0)
            if param.dim() == 1:
                param.uniform_(0.5, 2.0)
        if untied:
            reference.lm_head.weight = torch.nn.Parameter(torch.randn(VOCAB, 32) * 0.3)
        head = reference.lm_head.weight if untied else reference.shared.weight
        head[EOS] *= 1 + eos_boost
    reference.config.save_pretrained(folder)
    state = {name: t.detach().clone().contiguous() for name, t in reference.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    return HFCheckpoint(reference, folder)


@pytest.fixture(scope="session")
def gated_untied(tmp_path_factory) -> HFCheckpoint:
    return write_t5_checkpoint(
        tmp_path_factory.mktemp("flan_like"), "gated-gelu", untied=True, seed=2, eos_boost=1.0
    )


@pytest.fixture(scope="session")
def relu_tied(tmp_path_factory) -> HFCheckpoint:
    return write_t5_checkpoint(
        tmp_path_factory.mktemp("t5_like"), "relu", untied=False, seed=3, eos_boost=2.0
    )


@pytest.fixture(scope="session", params=["gated_untied", "relu_tied"])
def checkpoint(request) -> HFCheckpoint:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    return SHARED_DATA / "tokenizer"


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from model import Tokenizer

    return Tokenizer.from_folder(tokenizer_dir)


def random_batch(seed: int = 0, batch: int = 4, length: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (no EOS or pad inside) with different lengths per row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (batch, length), generator=g)
    lengths = torch.tensor([length, length - 9, 5, length - 3][:batch])
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    return ids.masked_fill(mask == 0, 0), mask
