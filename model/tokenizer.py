"""Tokenizer: a thin wrapper over transformers' T5 tokenizer with LexiMind's batching policy.

Policy: text longer than ``max_length`` tokens is truncated (EOS kept), never an error; empty or
whitespace-only text is a ``TokenizerError``. Loading converts ``spiece.model`` the first time (a few
seconds); converted tokenizers are cached per folder for the life of the process.
"""

from __future__ import annotations

import functools
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 512


class TokenizerError(ValueError):
    """Input the tokenizer refuses (empty text), or a folder it cannot load."""


@dataclass
class EncodedBatch:
    input_ids: torch.Tensor  # (B, T) long, right-padded with pad_token_id
    attention_mask: torch.Tensor  # (B, T) long, 1 for real tokens
    truncated: list[bool]  # per text: True when tokens were cut to fit max_length


@functools.lru_cache(maxsize=8)
def _load_backend(folder: str) -> Any:
    from transformers import T5Tokenizer

    return T5Tokenizer.from_pretrained(folder)


class Tokenizer:
    def __init__(self, backend: Any, max_length: int = DEFAULT_MAX_LENGTH, source: Path | None = None):
        self.backend = backend
        self.max_length = max_length
        self.source = source

    @classmethod
    def from_folder(cls, folder: str | Path, max_length: int = DEFAULT_MAX_LENGTH) -> Tokenizer:
        """A folder with ``spiece.model`` and/or ``tokenizer.json`` (e.g. shared/data/tokenizer, a saved model)."""
        folder = Path(folder).resolve()
        if not folder.is_dir():
            raise TokenizerError(f"tokenizer folder {folder} does not exist")
        if not ((folder / "spiece.model").is_file() or (folder / "tokenizer.json").is_file()):
            raise TokenizerError(f"{folder} has neither spiece.model nor tokenizer.json")
        return cls(_load_backend(str(folder)), max_length=max_length, source=folder)

    # ------------------------------------------------------------------ ids
    @property
    def pad_token_id(self) -> int:
        return int(self.backend.pad_token_id)

    @property
    def eos_token_id(self) -> int:
        return int(self.backend.eos_token_id)

    def __len__(self) -> int:
        return len(self.backend)

    # ------------------------------------------------------------------ encoding
    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """One text -> ids ending in EOS, at most max_length of them."""
        return self.batch_encode([text], max_length=max_length).input_ids[0].tolist()  # one row: no padding

    def batch_encode(self, texts: list[str], max_length: int | None = None) -> EncodedBatch:
        """Texts -> padded (B, T) ids and mask, T = longest encoded text (<= max_length)."""
        limit = max_length or self.max_length
        full = self.tokenize(texts)
        ids = [seq if len(seq) <= limit else seq[: limit - 1] + [self.eos_token_id] for seq in full]
        width = max(len(seq) for seq in ids)
        input_ids = torch.full((len(ids), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            attention_mask[row, : len(seq)] = 1
        return EncodedBatch(input_ids, attention_mask, [len(seq) > limit for seq in full])

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Texts -> full id lists ending in EOS, not truncated (for chunking long documents)."""
        if isinstance(texts, str):
            raise TypeError("batch_encode takes a list of texts; use encode() for one text")
        if not texts:
            raise TokenizerError("no texts to encode")
        for index, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise TokenizerError(
                    f"text {index} is empty; a document needs some text to be summarised or labelled"
                )
        return self.backend(list(texts), add_special_tokens=True)["input_ids"]

    def encode_targets(self, texts: list[str], max_length: int) -> torch.Tensor:
        """Target texts -> labels (B, T) with -100 on padding (ignored by cross-entropy)."""
        batch = self.batch_encode(texts, max_length=max_length)
        return batch.input_ids.masked_fill(batch.attention_mask == 0, -100)

    @staticmethod
    def shift_right(
        labels: torch.Tensor, decoder_start_token_id: int = 0, pad_token_id: int = 0
    ) -> torch.Tensor:
        """Decoder inputs for teacher forcing: start token, then labels[:-1]; -100 becomes pad."""
        shifted = labels.new_full(labels.shape, pad_token_id)
        shifted[..., 1:] = labels[..., :-1]
        shifted[..., 0] = decoder_start_token_id
        return shifted.masked_fill(shifted == -100, pad_token_id)

    # ------------------------------------------------------------------ decoding
    def decode(self, ids: list[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens).strip()

    def batch_decode(
        self, ids: torch.Tensor | list[list[int]], skip_special_tokens: bool = True
    ) -> list[str]:
        rows = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return [self.decode(row, skip_special_tokens) for row in rows]

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, folder: str | Path) -> Path:
        """tokenizer.json + tokenizer_config.json, and spiece.model when the source had one."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backend.save_pretrained(str(folder))
        spiece = self.source / "spiece.model" if self.source is not None else None
        if (
            spiece is not None
            and spiece.is_file()
            and spiece.resolve() != (folder / "spiece.model").resolve()
        ):
            shutil.copyfile(spiece, folder / "spiece.model")
        return folder
