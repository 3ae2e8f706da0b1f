"""Greedy decoding on a static cache: the summariser's fast path, captured in CUDA graphs on a GPU.

``model.generation.greedy_search`` is the reference loop (and the one that does beam search and
repetition penalties). This one does greedy decoding with ``min_new_tokens`` and ``no_repeat_ngram_size``
(the reference's rules, checked on the device), and is built for throughput:

- the decoder weights are fused per layer (q|k|v, cross k|v, wi_0|wi_1), so a step launches fewer kernels
  (``model.decode_step``);
- all state lives in a ``StaticDecodeCache`` (fixed addresses), written in place, so one decoding step can
  be captured in a CUDA graph and replayed: one launch per step instead of hundreds (``model.step_graphs``
  keeps the graphs; a capture that fails leaves the decoder eager, and its stats say why);
- the step keeps its own counter on the device, so the host does not touch the GPU between steps; it reads
  the finished flags every ``sync_every`` steps and then moves the rows still decoding to the front
  (``compact``) once enough have finished, so finished documents stop costing work;
- self-attention reads only the positions written so far, rounded up to ``key_block``.

On a CPU the same step runs eagerly, with exact key lengths and a check after every step. The output has
the shape and padding of ``MultiTaskModel.generate``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from dataclasses import dataclass, field

import torch

from model.decode_step import ATTENTION_KINDS, DecoderWeights, OutputRules, decode_step
from model.multitask import MultiTaskModel
from model.screened_head import ScreenedArgmax
from model.static_cache import CacheShape, StaticDecodeCache
from model.step_graphs import CapturedStep, GraphBackend, Step, StepGraphs

__all__ = [
    "ATTENTION_KINDS",
    "DecodeStats",
    "DecoderWeights",
    "GreedyDecoder",
    "OutputRules",
    "decode_step",
    "ladder_size",
]

logger = logging.getLogger(__name__)


def ladder_size(rows: int) -> int:
    """Smallest of 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, ... that holds `rows`: the batch sizes graphs are
    captured for, so a shrinking batch needs only a few of them."""
    power = 1 << max(0, (rows - 1).bit_length())  # next power of two >= rows
    three_quarters = power // 4 * 3
    return three_quarters if three_quarters >= rows else power


def round_up(value: int, block: int) -> int:
    return int(math.ceil(value / block) * block)


@dataclass
class DecodeStats:
    """Counters across generate() calls; row_steps - tokens is the work spent on rows that had finished."""

    calls: int = 0
    steps: int = 0  # decoding steps run
    row_steps: int = 0  # rows x steps computed (fillers and finished-but-not-yet-removed rows included)
    tokens: int = 0  # tokens the rows really produced (EOS included)
    compactions: int = 0
    graphs_captured: int = 0
    graph_steps: int = 0  # steps run as a replayed CUDA graph
    eager_steps: int = 0  # steps run op by op (CPU, graphs off, or after a failed capture)
    attention: str = ""
    attention_ms: dict[str, float] = field(default_factory=dict)  # one step per kernel kind, when timed
    graph_error: str = ""  # the last capture that failed, and why (then decoding went on eagerly)
    cpu_threads: int = 0  # CPU, decode_threads "auto": the thread count the last call chose

    @property
    def wasted_fraction(self) -> float:
        return 0.0 if self.row_steps == 0 else 1.0 - self.tokens / self.row_steps


class _ThreadProbe:
    """Times `steps_each` decoding steps with each candidate thread count, then keeps the fastest for the rest
    of the call. On a CPU shared with other processes the answer changes from minute to minute: a step is
    hundreds of small ops, and with several threads each op ends in a barrier that waits a scheduler time
    slice whenever another process holds a core; on idle cores the threads split the weight reads."""

    def __init__(self, candidates: list[int], steps_each: int = 2):
        self.candidates, self.steps_each = candidates, steps_each
        self.seconds = [0.0] * len(candidates)
        self.choice: int | None = None
        self._started = 0.0

    def before(self, step: int) -> None:
        if step < self.steps_each * len(self.candidates):
            torch.set_num_threads(self.candidates[step // self.steps_each])
            self._started = time.perf_counter()
        elif self.choice is None:
            self.choice = self.candidates[min(range(len(self.seconds)), key=self.seconds.__getitem__)]
            torch.set_num_threads(self.choice)

    def after(self, step: int) -> None:
        if step < self.steps_each * len(self.candidates):
            self.seconds[step // self.steps_each] += time.perf_counter() - self._started


@dataclass(frozen=True)
class _LoadedBatch:
    size: int  # documents
    rows: int  # cache rows in use (size, or rounded up to the ladder)
    source_len: int  # encoder positions read (rounded up to source_block)
    max_new_tokens: int
    loaded: int  # rows whose encoder K/V are in the cache


class GreedyDecoder:
    """Greedy decoding for one MultiTaskModel in eval mode; keeps its cache and graphs between calls."""

    def __init__(
        self,
        model: MultiTaskModel,
        *,
        use_cuda_graphs: bool | None = None,  # None: on CUDA devices
        sync_every: int | None = None,  # steps between finished-flag reads; None: 8 with graphs, else 1
        key_block: int | None = None,  # self-attention key lengths are rounded up to this; None: 16 / 1
        source_block: int | None = None,  # encoder lengths are rounded up to this; None: 64 / 1
        attention: str = "auto",  # "sdpa", "matmul" or "auto" (lean under graphs: timed once; else "sdpa")
        batch_ladder: bool | None = None,  # round batch sizes up to ladder_size(); None: with graphs
        # CPU: torch threads while decoding (restored after); "auto": time 1 and all threads on the first
        # steps of each call and keep the faster; None: as set
        cpu_threads: int | str | None = None,
        lean: bool | None = None,  # fused norms and residual adds, no all-zero masks; None: in bf16 / fp16
        # fp32 on a CPU: the exact argmax from a bf16 screen of the LM head (model.screened_head); None: there
        screen_head: bool | None = None,
        graph_backend: GraphBackend | None = None,  # None: torch.cuda (tests pass a CPU stand-in)
    ):
        if attention not in (*ATTENTION_KINDS, "auto"):
            raise ValueError(f"attention={attention!r}; use one of {ATTENTION_KINDS} or 'auto'")
        self.config = model.config
        self.weights = DecoderWeights(model)
        self.device = self.weights.embedding.device
        self.dtype = self.weights.embedding.dtype
        on_cuda = self.device.type == "cuda"
        self.use_graphs = on_cuda if use_cuda_graphs is None else use_cuda_graphs
        if self.use_graphs and not on_cuda and graph_backend is None:
            raise ValueError("CUDA graphs need the model on a CUDA device")
        self.cpu_threads = cpu_threads if not on_cuda else None
        self.lean = self.dtype in (torch.bfloat16, torch.float16) if lean is None else lean
        self.batch_ladder = self.use_graphs if batch_ladder is None else batch_ladder
        self.sync_every = sync_every or (8 if self.use_graphs else 1)
        # rounding lengths up bounds the number of graphs; exact (fp32) steps keep exact lengths, so their
        # attention sums run over the same keys as the reference's
        self.key_block = key_block or (16 if self.use_graphs and self.lean else 1)
        self.source_block = source_block or (64 if self.use_graphs and self.lean else 1)
        # exact (fp32) steps use the reference's kernel, so tokens match it (and transformers) bit for bit;
        # lean steps under graphs time both kinds on the first batch; lean steps on a CPU use matmuls (in bf16
        # the CPU's flash kernel takes 5x as long for one query: 0.70 against 0.12 ms at 8 x 256 keys)
        if attention == "auto" and not (self.lean and self.use_graphs):
            attention = "matmul" if self.lean and not on_cuda else "sdpa"
        self.attention = attention
        exact_cpu = not on_cuda and self.dtype == torch.float32 and not self.use_graphs
        if screen_head if screen_head is not None else exact_cpu:
            if not exact_cpu:
                raise ValueError("the LM head screen is for fp32 decoding on a CPU without graphs")
            self.weights.screen = ScreenedArgmax(self.weights.lm_head)
        self._cross_masked = True
        self._batch: _LoadedBatch | None = None
        self.stats = DecodeStats(attention=self.attention)
        self._cache: StaticDecodeCache | None = None
        self._bias_table: torch.Tensor | None = None
        # (rows, keys, source, min, masked) -> captured step; each graph has its own memory pool
        self._graphs = StepGraphs(graph_backend) if self.use_graphs else None

    # ------------------------------------------------------------------ public
    def generate(
        self,
        encoder_states: torch.Tensor,  # (B, S, d_model)
        attention_mask: torch.Tensor,  # (B, S)
        max_new_tokens: int,
        min_new_tokens: int = 0,
        no_repeat_ngram_size: int = 0,
    ) -> torch.Tensor:
        """(B, T) generated ids without the start token, pad after EOS, T = the longest output."""
        B, S, _ = encoder_states.shape
        self.prepare(B, S, max_new_tokens, padded=not bool(attention_mask.all()))
        self.load(0, encoder_states, attention_mask)
        return self.decode(min_new_tokens, no_repeat_ngram_size)

    @torch.inference_mode()
    def prepare(self, batch_size: int, source_len: int, max_new_tokens: int, padded: bool = True) -> None:
        """Start a batch of `batch_size` documents of at most `source_len` encoder tokens (`padded`: some are
        shorter); load() then takes their encoder states in any number of row blocks, so the caller never
        holds them all at once."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        rows = ladder_size(batch_size) if self.batch_ladder else batch_size
        padded_len = round_up(source_len, self.source_block)
        cache = self._ensure_cache(rows, padded_len, round_up(max_new_tokens, self.key_block))
        cache.reset(batch_size, rows, self.config.decoder_start_token_id)
        # lean steps skip the cross-attention mask when nothing is padded (then the fastest kernels apply)
        self._cross_masked = not self.lean or padded or padded_len != source_len
        self._batch = _LoadedBatch(batch_size, rows, padded_len, max_new_tokens, loaded=0)

    @torch.inference_mode()
    def load(self, first_row: int, encoder_states: torch.Tensor, attention_mask: torch.Tensor) -> None:
        """Cross-attention K/V of rows [first_row, first_row + b) from their encoder states (b, S, d_model)."""
        batch = self._batch
        if batch is None or first_row + encoder_states.shape[0] > batch.size:
            raise RuntimeError("load() needs prepare() first, and rows within its batch size")
        self._cache.load(first_row, self.weights.cross_key_values(encoder_states), attention_mask)
        self._batch = dataclasses.replace(batch, loaded=batch.loaded + encoder_states.shape[0])

    @torch.inference_mode()
    def decode(self, min_new_tokens: int = 0, no_repeat_ngram_size: int = 0) -> torch.Tensor:
        """Decode the batch prepare() loaded: (B, T) ids, as generate(); `no_repeat_ngram_size` > 0 bans
        any token that would repeat an n-gram of the output (the reference loop's rule, same semantics)."""
        batch, self._batch = self._batch, None
        if batch is None or batch.loaded != batch.size:
            raise RuntimeError("decode() needs prepare() and load() of every row first")
        if not 0 <= min_new_tokens <= batch.max_new_tokens:
            raise ValueError(f"min_new_tokens must be in [0, {batch.max_new_tokens}], got {min_new_tokens}")
        if no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be >= 0, got {no_repeat_ngram_size}")
        # a sequence of at most max_new_tokens tokens (start token included) never holds a longer n-gram
        ngram = no_repeat_ngram_size if no_repeat_ngram_size <= batch.max_new_tokens else 0
        threads = torch.get_num_threads()
        probe = None
        if self.cpu_threads == "auto":
            probe = _ThreadProbe([1, threads]) if threads > 1 else None
        elif self.cpu_threads:
            torch.set_num_threads(self.cpu_threads)
        try:
            return self._decode(batch, OutputRules(min_new_tokens, ngram), probe)
        finally:
            torch.set_num_threads(threads)

    def release(self) -> None:
        """Drop the captured graphs, then the cache they were captured on (memory goes back to the allocator)."""
        if self._graphs is not None:
            self._graphs.clear()
        self._cache = self._bias_table = None

    # ------------------------------------------------------------------ internals
    def _decode(self, batch: _LoadedBatch, rules: OutputRules, probe: _ThreadProbe | None) -> torch.Tensor:
        cfg, cache = self.config, self._cache
        B, rows, source_len, max_new_tokens = batch.size, batch.rows, batch.source_len, batch.max_new_tokens
        if self.attention == "auto":
            self._choose_attention(rows, source_len, rules)
        order = torch.arange(rows)  # original batch row of each cache row; >= B for fillers
        result = torch.full((B, max_new_tokens), cfg.pad_token_id, dtype=torch.long, device=self.device)
        step = 0
        while step < max_new_tokens:
            count = min(self.sync_every, max_new_tokens - step)
            for _ in range(count):
                if probe is not None:
                    probe.before(step)
                self._run_step(
                    rows,
                    min(round_up(step + 1, self.key_block), cache.shape.target_len),
                    source_len,
                    rules,
                )
                if probe is not None:
                    probe.after(step)
                step += 1
            self.stats.row_steps += rows * count
            finished = cache.finished[:rows].cpu()  # the only host sync of a window
            alive = int((~finished).sum())
            if alive == 0:
                break
            target = ladder_size(alive) if self.batch_ladder else alive
            if target < rows:
                self._collect(result, order, rows, max_new_tokens)
                fillers = finished.nonzero().squeeze(1)[: target - alive]
                keep = torch.cat([(~finished).nonzero().squeeze(1), fillers]).sort().values
                cache.compact(keep.to(self.device))
                order, rows = order[keep], target
                self.stats.compactions += 1
        self._collect(result, order, rows, max_new_tokens)
        self.stats.calls += 1
        self.stats.steps += step
        if probe is not None and probe.choice is not None:
            self.stats.cpu_threads = probe.choice
        is_eos = result == cfg.eos_token_id
        lengths = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, max_new_tokens)
        self.stats.tokens += int(lengths.sum())
        return result[:, : int(lengths.max())]

    def _collect(self, result: torch.Tensor, order: torch.Tensor, rows: int, width: int) -> None:
        real = (order[:rows] < result.shape[0]).nonzero().squeeze(1)
        result[order[real].to(self.device)] = self._cache.out[real.to(self.device), :width]

    def _ensure_cache(self, rows: int, source_len: int, target_len: int) -> StaticDecodeCache:
        cache = self._cache
        if cache is None or not cache.shape.fits(rows, source_len, target_len):
            old = cache.shape if cache is not None else None
            cfg = self.config
            shape = CacheShape(
                layers=cfg.num_decoder_layers,
                heads=cfg.num_heads,
                head_dim=cfg.d_kv,
                rows=max(rows, old.rows if old else 0),
                source_len=max(source_len, old.source_len if old else 0),
                target_len=max(target_len, old.target_len if old else 0),
            )
            self.release()
            cache = self._cache = StaticDecodeCache(shape, self.device, self.dtype, cfg.pad_token_id)
            self._bias_table = self.weights.self_bias_table(shape.target_len, self.dtype)
            logger.info("decoder cache %s: %.1f MB", shape, cache.nbytes / 2**20)
        return cache

    def _bound_step(self, rows: int, key_len: int, source_len: int, rules: OutputRules, attention: str) -> Step:
        """The step with every argument bound: what a graph captures (and keeps alive) or what runs eagerly."""
        return functools.partial(
            decode_step,
            self.weights,
            self._cache,
            self._bias_table,
            rows,
            key_len,
            source_len,
            self.config.eos_token_id,
            rules,
            attention,
            self.lean,
            self._cross_masked,
            self.config.decoder_start_token_id,
        )

    def _run_step(self, rows: int, key_len: int, source_len: int, rules: OutputRules) -> None:
        if self.use_graphs:
            key = (rows, key_len, source_len, rules, self._cross_masked)
            captured = self._graphs.get(key)
            if captured is None:
                try:
                    captured = self._capture(rows, key_len, source_len, rules, self.attention)
                except Exception as err:  # a kernel that cannot be captured: slower, still correct
                    self._fall_back_to_eager(key, err)
                else:
                    self._graphs.put(key, captured)
            if captured is not None:
                captured.replay()
                self.stats.graph_steps += 1
                return
        self._bound_step(rows, key_len, source_len, rules, self.attention)()
        self.stats.eager_steps += 1

    def _capture(
        self, rows: int, key_len: int, source_len: int, rules: OutputRules, attention: str
    ) -> CapturedStep:
        step = self._bound_step(rows, key_len, source_len, rules, attention)
        captured = self._graphs.capture(step, self._cache.snapshot, self._cache.restore)
        self.stats.graphs_captured += 1
        return captured

    def _fall_back_to_eager(self, key: tuple, err: Exception) -> None:
        logger.warning("CUDA graph capture failed at %s; decoding without graphs from now on: %s", key, err)
        self._record_graph_error(key, err)
        self.use_graphs = False
        self._graphs.clear()

    def _record_graph_error(self, key: tuple | str, err: Exception) -> None:
        self.stats.graph_error = f"capture {key}: {type(err).__name__}: {err}"[:300]

    def _choose_attention(self, rows: int, source_len: int, rules: OutputRules, replays: int = 10) -> None:
        """Time one full-length captured step with each attention kernel on this batch shape; keep the
        faster, and its graph (each was captured into a pool of its own, so dropping the other is safe)."""
        key_len = self._cache.shape.target_len
        saved = self._cache.snapshot()
        timings, graphs = {}, {}
        for kind in ATTENTION_KINDS:
            try:
                captured = self._capture(rows, key_len, source_len, rules, kind)
            except Exception as err:
                logger.warning("attention %s cannot be captured: %s", kind, err)
                self._record_graph_error(f"attention {kind}", err)
                continue

            def replay_from_start(captured: CapturedStep = captured) -> None:
                self._cache.step.zero_()
                captured.replay()

            timings[kind] = self._graphs.backend.time_ms(replay_from_start, replays)
            self._cache.restore(saved)
            graphs[kind] = captured
        self.attention = min(timings, key=timings.__getitem__) if timings else "matmul"
        if self.attention in graphs:
            self._graphs.put(
                (rows, key_len, source_len, rules, self._cross_masked), graphs[self.attention]
            )
        self.stats.attention = self.attention
        self.stats.attention_ms = {kind: round(ms, 4) for kind, ms in timings.items()}
        logger.info("decode step attention: %s (ms per step: %s)", self.attention, timings)
