"""The batched inference pipeline: texts in, one ``DocumentPrediction`` per text out, in input order.

One path for every document:

1. clean the text (``TextPreprocessor``), tokenize it, prefix it with ``summarize:``;
2. split a document longer than the encoder limit into near-equal chunks (at most ``max_chunks``);
3. group the chunks of all documents into length-bucketed batches under a token budget;
4. per batch, ONE encoder pass: the topic and emotion heads read the same encoder states that the decoder
   cross-attends to while it writes the summary (greedy, with or without an n-gram ban: ``GreedyDecoder``,
   static cache, CUDA graphs on a GPU; beam search and repetition penalties: ``MultiTaskModel.generate``);
5. a document that was split gets the summary of its chunk summaries (bounded by ``max_rounds``), and
   the average of its chunks' label probabilities (weighted by chunk length).

When labels.json says the heads are not trained yet, topic and emotions come from zero-shot prompting
(``model.zero_shot``), which needs encoder passes of its own over the prompts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from model.artifacts import Artifact, load_artifact
from model.batching import BatchBudget, plan_batches, split_evenly
from model.fast_decode import GreedyDecoder
from model.predictions import DocumentPrediction, EmotionScore, StageTimer, TopicPrediction

if TYPE_CHECKING:
    from model.multitask import MultiTaskModel
    from model.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

__all__ = ["DocumentPrediction", "EmotionScore", "Pipeline", "PipelineConfig", "TopicPrediction"]

SUMMARY_PREFIX = "summarize: "


@dataclass
class PipelineConfig:
    max_summary_tokens: int = 128
    min_summary_tokens: int = 0
    num_beams: int = 1  # > 1, or a repetition penalty, uses the reference loop instead of GreedyDecoder
    no_repeat_ngram_size: int = 0  # > 0: no n-gram of this size twice in a summary (both loops)
    repetition_penalty: float = 1.0
    max_input_tokens: int | None = None  # encoder tokens per chunk, prefix and EOS included; None: model's
    max_chunks: int = 8  # chunks per document per round; text beyond them is not read
    max_rounds: int = 3  # summary of chunk summaries, at most this many encoder/decoder rounds
    # batches: rows x longest row <= max_batch_tokens, rows <= max_batch_rows; None: the device's default
    max_batch_tokens: int | None = None
    max_batch_rows: int | None = None
    encoder_batch_tokens: int | None = None  # encoder sub-batches (bounds activation memory); None: default
    num_threads: int | None = None  # CPU: torch threads (encoder, heads); None: leave torch's setting
    # CPU: torch threads while decoding; None: timed on the first steps of every batch, one thread or all
    # (on cores shared with other processes one thread is often several times faster: each of a step's
    # hundreds of small ops ends in a barrier that can wait a whole scheduler slice; see docs/performance.md)
    decode_threads: int | None = None
    use_cuda_graphs: bool | None = None  # None: on CUDA
    dtype: str | None = None  # "bfloat16", "float32", ...; None: bfloat16 on CUDA, float32 on a CPU
    zero_shot: bool = True  # label with zero-shot prompting while the heads are untrained

    @property
    def fast_decoding(self) -> bool:
        return self.num_beams == 1 and self.repetition_penalty == 1.0


# per device kind: (max_batch_tokens, max_batch_rows, encoder_batch_tokens)
# CUDA encoder passes of 32 x 512 tokens. An eager pass of FLAN-T5-base (with the decoder's cross-attention
# K/V it feeds) is about 580 kernel launches whatever its size: on the H200 a pass took 13.7 ms for 1
# document and 11.0 to 11.3 ms for 8 (docs/bench/gpu_h200_2026-11-28.jsonl), so passes of 8 spent most of
# their time launching (0.70 s of 1.35 s per 512 documents at batch 256). 32 documents a pass cut the
# launches 4x; their activations (about 0.5 GB) run while the decoder cache is allocated, inside the
# margin to transformers' peak at batch 256 (6.8 against 9.6 GB). Chosen from that arithmetic, not yet
# measured at this size: bench/pipeline.py's `encoder` configuration times passes of 8/32/128/256.
_DEVICE_DEFAULTS = {"cuda": (256 * 512, 256, 32 * 512), "cpu": (8 * 512, 8, 8 * 512)}


@dataclass
class SegmentResults:
    """Per encoder input (chunk): summary ids and label probabilities."""

    summaries: list[list[int]] = field(default_factory=list)
    topic: list[torch.Tensor | None] = field(default_factory=list)
    emotion: list[torch.Tensor | None] = field(default_factory=list)


class Pipeline:
    def __init__(
        self, artifact: Artifact, device: str | torch.device = "auto", config: PipelineConfig | None = None
    ):
        self.config = config or PipelineConfig()
        self.device = resolve_device(device)
        if self.device.type == "cpu" and self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)
        if self.config.dtype is not None:
            dtype = getattr(torch, self.config.dtype)
        else:
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model = artifact.model.to(device=self.device, dtype=dtype).eval()
        self.tokenizer = artifact.tokenizer
        self.labels = artifact.labels
        self.version = artifact.version
        cfg = self.model.config
        self.max_input_tokens = self.config.max_input_tokens or cfg.max_input_length
        tokens, rows, encoder_tokens = _DEVICE_DEFAULTS["cuda" if self.device.type == "cuda" else "cpu"]
        self.budget = BatchBudget(self.config.max_batch_tokens or tokens, self.config.max_batch_rows or rows)
        self.encoder_batch_tokens = self.config.encoder_batch_tokens or encoder_tokens
        self.preprocessor = None
        self.prefix_ids: list[int] = []
        if self.tokenizer is not None:  # without one (benchmarks on token ids) scikit-learn is not needed
            from model.preprocessing import TextPreprocessor

            self.preprocessor = TextPreprocessor()
            self.prefix_ids = self.tokenizer.tokenize([SUMMARY_PREFIX.strip()])[0][:-1]  # no EOS
        self.decoder = self._make_decoder() if self.config.fast_decoding else None
        self.heads_trained = bool(self.labels.get("heads_trained", False))
        self.topic_temperature = float(self.labels.get("topic_temperature", 1.0))
        self.stage_seconds: dict[str, float] = {}  # totals per stage since construction (benchmarks)

    def _make_decoder(self) -> GreedyDecoder:
        c = self.config
        threads = c.decode_threads or "auto"
        return GreedyDecoder(self.model, use_cuda_graphs=c.use_cuda_graphs, cpu_threads=threads)

    @classmethod
    def for_model(
        cls,
        model: MultiTaskModel,
        *,
        tokenizer: Tokenizer | None = None,
        labels: dict[str, Any] | None = None,
        version: str = "unversioned",
        device: str | torch.device = "auto",
        config: PipelineConfig | None = None,
    ) -> Pipeline:
        """A pipeline around a bare model (benchmarks, evaluation); without a tokenizer only
        generate_ids() works."""
        labels = labels or {"topic": [], "emotion": [], "emotion_thresholds": {}, "heads_trained": False}
        artifact = Artifact(model, tokenizer, labels, {}, {"version": version}, Path(version))
        return cls(artifact, device=device, config=config)

    @classmethod
    def from_artifact(
        cls, folder: str | Path, device: str | torch.device = "auto", config: PipelineConfig | None = None
    ) -> Pipeline:
        return cls(load_artifact(folder), device=device, config=config)

    # ------------------------------------------------------------------ texts
    @torch.inference_mode()
    def run(self, texts: Sequence[str]) -> list[DocumentPrediction]:
        """One prediction per text, in input order. Raises on any failure (e.g. TokenizerError for an empty
        text): the caller isolates a bad document by retrying smaller groups."""
        if self.tokenizer is None:
            raise RuntimeError("this pipeline has no tokenizer; use generate_ids() on token ids")
        texts = list(texts)
        if not texts:
            return []
        timer = StageTimer.for_documents(len(texts))
        started = time.perf_counter()
        cleaned = self.preprocessor.transform(texts)
        bodies = [ids[:-1] for ids in self.tokenizer.tokenize(cleaned)]  # EOS comes back per chunk
        timer.charge("tokenize_s", time.perf_counter() - started, list(range(len(texts))))

        chunks = [split_evenly(body, self._chunk_body_len(), self.config.max_chunks) for body in bodies]
        segments = [self._segment(chunk) for doc_chunks, _ in chunks for chunk in doc_chunks]
        owners = [doc for doc, (doc_chunks, _) in enumerate(chunks) for _ in doc_chunks]
        classify = self.heads_trained
        first = self._process(segments, owners, timer, classify=classify)
        summaries = self._summaries_of_chunks(first, owners, len(texts), timer)

        topics: list[Any] = [None] * len(texts)
        emotions: list[Any] = [None] * len(texts)
        if classify:
            topics, emotions = self._pool_chunk_probabilities(first, segments, owners, len(texts))
        elif self.config.zero_shot:
            topics, emotions = self._zero_shot(self._prompt_texts(cleaned), timer)
        return [
            DocumentPrediction(
                summary=self.tokenizer.decode(summaries[doc]),
                topic=self._topic(topics[doc]),
                emotions=self._emotions(emotions[doc]),
                timings={**timer.per_document[doc], "total_s": sum(timer.per_document[doc].values())},
                model_version=self.version,
                chunks=len(chunks[doc][0]),
                truncated=chunks[doc][1],
                zero_shot=not classify and self.config.zero_shot,
            )
            for doc in range(len(texts))
        ]

    # ------------------------------------------------------------------ token ids
    @torch.inference_mode()
    def generate_ids(self, segments: Sequence[Sequence[int]]) -> list[list[int]]:
        """Summary ids (EOS included, no padding) of encoder inputs given as ids; batched like run()."""
        results = self._process(list(segments), list(range(len(segments))), None, classify=False)
        return results.summaries

    def _process(
        self, segments: list[Sequence[int]], owners: list[int], timer: StageTimer | None, classify: bool
    ) -> SegmentResults:
        """Encode every segment once (length-bucketed batches), classify and summarise from those states."""
        results = SegmentResults([[] for _ in segments], [None] * len(segments), [None] * len(segments))
        cfg, device = self.model.config, self.device
        for batch in plan_batches([len(s) for s in segments], self.budget):
            docs = sorted({owners[i] for i in batch})
            width = max(len(segments[i]) for i in batch)
            ids = torch.full((len(batch), width), cfg.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, index in enumerate(batch):
                ids[row, : len(segments[index])] = torch.as_tensor(segments[index])
                mask[row, : len(segments[index])] = 1
            ids, mask = ids.to(device), mask.to(device)

            started = time.perf_counter()
            c = self.config
            if self.decoder is not None:
                padded = any(len(segments[i]) < width for i in batch)
                self.decoder.prepare(len(batch), width, c.max_summary_tokens, padded=padded)
            kept, topics, emotions = [], [], []  # kept: encoder states, only for the reference loop
            for first, states, part_mask in self._encoder_passes(ids, mask):
                if classify:
                    out = self.model.classify(states, part_mask)
                    topics.append(out.topic_probabilities(self.topic_temperature))
                    emotions.append(out.emotion_probabilities())
                if self.decoder is not None:
                    self.decoder.load(first, states, part_mask)  # cross-attention K/V into the decoder cache
                else:
                    kept.append(states)
            for probabilities, store in ((topics, results.topic), (emotions, results.emotion)):
                if probabilities and probabilities[0] is not None:
                    for index, row in zip(batch, torch.cat(probabilities).cpu(), strict=True):
                        store[index] = row
            self._charge(timer, "encode_s", started, docs)

            started = time.perf_counter()
            if self.decoder is not None:
                generated = self.decoder.decode(c.min_summary_tokens, c.no_repeat_ngram_size).cpu()
            else:
                generated = self._generate_with_rules(torch.cat(kept), mask).cpu()
            for row, index in enumerate(batch):
                results.summaries[index] = _strip_padding(generated[row].tolist(), cfg.eos_token_id)
            self._charge(timer, "summarize_s", started, docs)
        return results

    def _encoder_passes(
        self, ids: torch.Tensor, mask: torch.Tensor
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(first row, encoder states, mask) per sub-batch of encoder_batch_tokens: one encoder pass per
        row, and only one sub-batch of states alive at a time (the heads and the decoder cache take them)."""
        rows = max(1, self.encoder_batch_tokens // ids.shape[1])
        for first in range(0, ids.shape[0], rows):
            part_ids, part_mask = ids[first : first + rows], mask[first : first + rows]
            yield first, self.model.encode(part_ids, part_mask), part_mask

    def _generate_with_rules(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Beam search, n-gram bans, repetition penalty: the reference loop."""
        c = self.config
        return self.model.generate(
            None,
            mask,
            max_new_tokens=c.max_summary_tokens,
            min_new_tokens=c.min_summary_tokens,
            num_beams=c.num_beams,
            no_repeat_ngram_size=c.no_repeat_ngram_size,
            repetition_penalty=c.repetition_penalty,
            encoder_states=states,
        )

    # ------------------------------------------------------------------ long documents
    def _chunk_body_len(self) -> int:
        return self.max_input_tokens - len(self.prefix_ids) - 1  # room for the prefix and EOS

    def _segment(self, body: Sequence[int]) -> list[int]:
        return [*self.prefix_ids, *body, self.model.config.eos_token_id]

    def _summaries_of_chunks(
        self, first: SegmentResults, owners: list[int], documents: int, timer: StageTimer
    ) -> list[list[int]]:
        """Each document's final summary ids: a split document's chunk summaries are joined and summarised
        again, round after round, until one chunk holds them; the last round truncates."""
        eos = self.model.config.eos_token_id
        parts: dict[int, list[list[int]]] = {}
        for index, doc in enumerate(owners):
            parts.setdefault(doc, []).append(first.summaries[index])
        for round_number in range(2, self.config.max_rounds + 1):
            pending = {doc: chunks for doc, chunks in parts.items() if len(chunks) > 1}
            if not pending:
                break
            last = round_number == self.config.max_rounds
            segments, seg_owners = [], []
            for doc, chunks in pending.items():
                body = [token for chunk in chunks for token in chunk if token != eos]
                new_chunks, _ = split_evenly(
                    body, self._chunk_body_len(), 1 if last else self.config.max_chunks
                )
                segments += [self._segment(chunk) for chunk in new_chunks]
                seg_owners += [doc] * len(new_chunks)
            results = self._process(segments, seg_owners, timer, classify=False)
            for doc in pending:
                parts[doc] = []
            for index, doc in enumerate(seg_owners):
                parts[doc].append(results.summaries[index])
        return [parts[doc][0] for doc in range(documents)]

    @staticmethod
    def _pool_chunk_probabilities(
        first: SegmentResults, segments: list[Sequence[int]], owners: list[int], documents: int
    ) -> tuple[list[torch.Tensor | None], list[torch.Tensor | None]]:
        """Per document, the chunk probabilities averaged with chunk lengths as weights."""
        pooled: list[list[torch.Tensor | None]] = []
        for probabilities in (first.topic, first.emotion):
            sums: list[Any] = [None] * documents
            weights = [0] * documents
            for index, doc in enumerate(owners):
                if probabilities[index] is None:
                    continue
                weighted = probabilities[index] * len(segments[index])
                sums[doc] = weighted if sums[doc] is None else sums[doc] + weighted
                weights[doc] += len(segments[index])
            pooled.append([None if s is None else s / w for s, w in zip(sums, weights, strict=True)])
        return pooled[0], pooled[1]

    # ------------------------------------------------------------------ labels
    def _prompt_texts(self, cleaned: list[str]) -> list[str]:
        """Each text cut to what a zero-shot prompt can read. Prompts are truncated to the tokenizer's length,
        so the words past it never count, but each label's prompt tokenized the whole text again (a 4 MB
        text took 105 s). The cut loses nothing once the cut text still has more tokens than a prompt holds:
        pieces never cross whitespace, so every token before the cut word is the whole text's token."""
        enough = self.tokenizer.max_length + 32
        texts = []
        for text in cleaned:
            cut = 16 * enough  # a piece is at most 16 characters
            while cut < len(text) and (
                not text[:cut].strip() or len(self.tokenizer.tokenize([text[:cut]])[0]) < enough
            ):
                cut *= 2
            texts.append(text[:cut])
        return texts

    def _zero_shot(self, cleaned: list[str], timer: StageTimer) -> tuple[list[Any], list[Any]]:
        from model.zero_shot import zero_shot_emotions, zero_shot_topics

        documents = list(range(len(cleaned)))
        topics: list[Any] = [None] * len(cleaned)
        emotions: list[Any] = [None] * len(cleaned)
        started = time.perf_counter()
        if self.labels["topic"]:
            results = zero_shot_topics(self.model, self.tokenizer, cleaned, self.labels["topic"])
            topics = [torch.tensor([r.scores[label] for label in self.labels["topic"]]) for r in results]
        if self.labels["emotion"]:
            results = zero_shot_emotions(self.model, self.tokenizer, cleaned, self.labels["emotion"])
            emotions = [torch.tensor([r.scores[label] for label in self.labels["emotion"]]) for r in results]
        self._charge(timer, "zero_shot_s", started, documents)
        return topics, emotions

    def _topic(self, probabilities: torch.Tensor | None) -> TopicPrediction | None:
        if probabilities is None:
            return None
        scores = dict(zip(self.labels["topic"], (float(p) for p in probabilities), strict=True))
        label = max(scores, key=scores.__getitem__)
        return TopicPrediction(label=label, score=scores[label], scores=scores)

    def _emotions(self, probabilities: torch.Tensor | None) -> list[EmotionScore]:
        if probabilities is None:
            return []
        thresholds = self.labels["emotion_thresholds"]
        scored = [
            EmotionScore(label, float(p), float(thresholds[label]), float(p) >= float(thresholds[label]))
            for label, p in zip(self.labels["emotion"], probabilities, strict=True)
        ]
        return sorted(scored, key=lambda e: -e.score)

    def _charge(self, timer: StageTimer | None, stage: str, started: float, documents: list[int]) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # stage times must include the queued GPU work
        seconds = time.perf_counter() - started
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds
        if timer is not None:
            timer.charge(stage, seconds, documents)


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _strip_padding(ids: list[int], eos_token_id: int) -> list[int]:
    """Generated ids up to and including EOS (everything after it is padding)."""
    return ids[: ids.index(eos_token_id) + 1] if eos_token_id in ids else ids
