"""From examples to tensors: per-task encoded rows, length-bucketed batches, padding.

Each task has its own stream of batches. A stream's batch order for epoch ``e`` is a pure function of
(seed, task, e), so its whole state is two integers and a resumed run sees exactly the batches an
uninterrupted one would have.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from model.batching import split_evenly
from model.preprocessing import BasicTextCleaner
from model.training.data import Example

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
_CLEANER = BasicTextCleaner()
BUCKET_CHUNK = 64  # batches' worth of examples sorted together: similar lengths, still well mixed


@dataclass
class TaskRows:
    """One task's encoded examples: encoder ids and a target per row."""

    task: str
    input_ids: list[list[int]]
    targets: list[Any]  # summary: list[int] token ids; topic: int; emotion: list[float] multi-hot

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Batch:
    task: str
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    decoder_input_ids: torch.Tensor | None = None  # (B, T_dec), summary only
    labels: torch.Tensor | None = None  # summary: (B, T_dec) with IGNORE_INDEX; topic: (B,); emotion: (B, L)

    def to(self, device: torch.device) -> Batch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(self.task, move(self.input_ids), move(self.attention_mask), move(self.decoder_input_ids),
                     move(self.labels))

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])


def encode_rows(
    task: str,
    examples: Sequence[Example],
    tokenizer: Any,
    *,
    topic_labels: Sequence[str],
    emotion_labels: Sequence[str],
    max_input_length: int,
    max_summary_length: int,
    input_prefix: str = "",
) -> TaskRows:
    """Tokenise the examples labelled for `task`; rows with labels the model's heads lack are dropped."""
    topic_index = {label: i for i, label in enumerate(topic_labels)}
    emotion_index = {label: i for i, label in enumerate(emotion_labels)}
    chosen, targets = [], []
    unknown: set[str] = set()
    for example in examples:
        if not example.has(task):
            continue
        if task == "topic":
            if example.topic not in topic_index:
                unknown.add(example.topic)
                continue
            targets.append(topic_index[example.topic])
        elif task == "emotion":
            row = [0.0] * len(emotion_labels)
            for label in example.emotions:
                if label in emotion_index:
                    row[emotion_index[label]] = 1.0
                else:
                    unknown.add(label)
            targets.append(row)
        else:
            targets.append(None)  # filled after tokenising the summaries
        chosen.append(example)
    if unknown:
        log.warning("%s: ignoring labels the model has no head output for: %s", task, sorted(unknown)[:20])
    input_ids = [chunks[0] for chunks in encoder_inputs(tokenizer, [e.text for e in chosen], max_input_length,
                                                        input_prefix, max_chunks=1)]
    if task == "summary":
        targets = token_ids(tokenizer, [e.summary for e in chosen], max_summary_length)
    return TaskRows(task, input_ids, targets)


def encoder_inputs(
    tokenizer: Any, texts: Sequence[str], max_length: int, prefix: str, max_chunks: int = 1
) -> list[list[list[int]]]:
    """Per text, its encoder inputs built as the inference pipeline builds them: cleaned text, prefix ids,
    a chunk of the body, EOS. A body longer than one input is split into at most max_chunks near-equal
    chunks (model.batching.split_evenly); with max_chunks=1 it is truncated."""
    eos = tokenizer.eos_token_id
    prefix_ids = tokenizer.tokenize([prefix.strip()])[0][:-1] if prefix.strip() else []
    room = max_length - len(prefix_ids) - 1
    if room < 1:
        raise ValueError(f"max_length={max_length} leaves no room for text after the prefix {prefix!r}")
    inputs = []
    for ids in token_ids(tokenizer, texts, max_length=None):
        chunks, _ = split_evenly(ids[:-1], room, max_chunks)
        inputs.append([[*prefix_ids, *chunk, eos] for chunk in chunks])
    return inputs


def token_ids(tokenizer: Any, texts: Sequence[str], max_length: int | None, chunk: int = 512) -> list[list[int]]:
    """Unpadded ids ending in EOS, truncated to max_length (EOS kept), like Tokenizer.batch_encode.

    Texts are cleaned first exactly as the inference pipeline cleans them (model.preprocessing)."""
    eos = tokenizer.eos_token_id
    cleaned = _CLEANER.transform(texts)
    out: list[list[int]] = []
    for start in range(0, len(cleaned), chunk):
        for seq in tokenizer.tokenize(cleaned[start:start + chunk]):
            out.append(seq if max_length is None or len(seq) <= max_length else seq[: max_length - 1] + [eos])
    return out


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int, rng: random.Random
) -> list[list[int]]:
    """Row indices grouped into batches of similar length, at most batch_size rows and max_tokens padded
    tokens each (a single longer row still gets a batch of its own). Batch order is shuffled."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    chunk = batch_size * BUCKET_CHUNK
    for start in range(0, len(order), chunk):
        batches.extend(group_by_length(order[start:start + chunk], lengths, batch_size, max_tokens))
    rng.shuffle(batches)
    return batches


def group_by_length(
    indices: Sequence[int], lengths: Sequence[int], batch_size: int, max_tokens: int
) -> list[list[int]]:
    """Sort indices by length and cut them into batches under both limits."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in sorted(indices, key=lambda i: lengths[i]):
        grown = max(longest, lengths[index])
        if current and (len(current) + 1 > batch_size or grown * (len(current) + 1) > max_tokens):
            batches.append(current)
            current, grown = [], lengths[index]
        current.append(index)
        longest = grown
    if current:
        batches.append(current)
    return batches


def collate(rows: TaskRows, indices: Sequence[int], *, pad_id: int, decoder_start_id: int) -> Batch:
    ids = [rows.input_ids[i] for i in indices]
    width = max(len(seq) for seq in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    if rows.task == "topic":
        return Batch("topic", input_ids, mask, labels=torch.tensor([rows.targets[i] for i in indices]))
    if rows.task == "emotion":
        labels = torch.tensor([rows.targets[i] for i in indices], dtype=torch.float32)
        return Batch("emotion", input_ids, mask, labels=labels)
    targets = [rows.targets[i] for i in indices]
    target_width = max(len(seq) for seq in targets)
    labels = torch.full((len(targets), target_width), IGNORE_INDEX, dtype=torch.long)
    decoder_inputs = torch.full((len(targets), target_width), pad_id, dtype=torch.long)
    for row, seq in enumerate(targets):
        labels[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        decoder_inputs[row, 0] = decoder_start_id  # teacher forcing: the targets shifted right by one
        decoder_inputs[row, 1 : len(seq)] = torch.tensor(seq[:-1], dtype=torch.long)
    return Batch("summary", input_ids, mask, decoder_input_ids=decoder_inputs, labels=labels)


class TaskStream:
    """Endless length-bucketed batches over one task's rows; state is (epoch, position)."""

    def __init__(self, rows: TaskRows, *, batch_size: int, max_tokens: int, seed: int, pad_id: int,
                 decoder_start_id: int):
        if not len(rows):
            raise ValueError(f"no training rows for task {rows.task!r}")
        self.rows = rows
        self.batch_size, self.max_tokens, self.seed = batch_size, max_tokens, seed
        self.pad_id, self.decoder_start_id = pad_id, decoder_start_id
        self.lengths = [len(seq) for seq in rows.input_ids]
        self.epoch, self.position = 0, 0
        self._batches = self._plan(0)
        self.batches_per_epoch = len(self._batches)  # epoch 0's; later epochs' plans differ by a batch or so

    def _plan(self, epoch: int) -> list[list[int]]:
        rng = random.Random(f"{self.seed}:{self.rows.task}:{epoch}")
        return bucketed_batches(self.lengths, self.batch_size, self.max_tokens, rng)

    def next_batch(self) -> Batch:
        if self.position >= len(self._batches):
            self.epoch, self.position = self.epoch + 1, 0
            self._batches = self._plan(self.epoch)
        indices = self._batches[self.position]
        self.position += 1
        return collate(self.rows, indices, pad_id=self.pad_id, decoder_start_id=self.decoder_start_id)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def restore(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._batches = self._plan(self.epoch)

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.position / max(1, len(self._batches))


def fixed_batches(rows: TaskRows, *, batch_size: int, max_tokens: int, pad_id: int,
                  decoder_start_id: int) -> list[Batch]:
    """Every row once, in length order (evaluation)."""
    lengths = [len(seq) for seq in rows.input_ids]
    groups = group_by_length(range(len(rows)), lengths, batch_size, max_tokens)
    return [collate(rows, g, pad_id=pad_id, decoder_start_id=decoder_start_id) for g in groups]
