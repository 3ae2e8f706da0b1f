"""Greedy decoding on a static cache: the summariser's fast path, captured in CUDA graphs on a GPU.

``model.generation.greedy_search`` is the reference loop (and the one that does beam search, n-gram bans
and repetition penalties). This one does plain greedy decoding with ``min_new_tokens`` and nothing else,
and is built for throughput:

- the decoder weights are fused per layer (q|k|v, cross k|v, wi_0|wi_1), so a step launches fewer kernels;
- all state lives in a ``StaticDecodeCache`` (fixed addresses), written in place, so one decoding step can
  be captured in a CUDA graph and replayed: one launch per step instead of hundreds;
- the step keeps its own counter on the device, so the host does not touch the GPU between steps; it reads
  the finished flags every ``sync_every`` steps and then moves the rows still decoding to the front
  (``compact``) once enough have finished, so finished documents stop costing work;
- self-attention reads only the positions written so far, rounded up to ``key_block``.

On a CPU the same step runs eagerly, with exact key lengths and a check after every step.
In fp32 the numerics are those of ``MultiTaskModel.decode_step`` (same norm modules, biases and masks); in
bf16 the step is "lean" (fused RMSNorm, residual adds in the matmul epilogue, no all-zero masks), which
rounds differently in the last bit. The output has the shape and padding of ``MultiTaskModel.generate``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from model.attention import masked_bias
from model.layers import RMSNorm
from model.lora import LoRALinear
from model.multitask import MultiTaskModel
from model.static_cache import CacheShape, StaticDecodeCache

logger = logging.getLogger(__name__)

ATTENTION_KINDS = ("sdpa", "matmul")


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
    min_new_tokens: int,
    attention: str,
    lean: bool = False,  # fewer kernels, bf16 rounding differs slightly from the reference (see GreedyDecoder)
    cross_masked: bool = True,  # False when no row has encoder padding: attention without a mask
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
    logits = F.linear(x, w.lm_head)  # (B, V)
    if min_new_tokens > 0:
        logits[:, eos_token_id].masked_fill_(step < min_new_tokens, float("-inf"))
    finished = cache.finished[:rows]
    next_tokens = logits.argmax(dim=-1).masked_fill_(finished, cache.pad_token_id)  # (B,)
    cache.out[:rows].index_copy_(1, step, next_tokens[:, None])
    finished |= next_tokens == eos_token_id
    cache.tokens[:rows].copy_(next_tokens)
    step += 1


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
    attention: str = ""
    attention_ms: dict[str, float] = field(default_factory=dict)  # one step per kernel kind, when timed
    graph_error: str = ""  # why decoding fell back to eager steps, if it did
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
        attention: str = "auto",  # "sdpa", "matmul" or "auto" (lean on CUDA: timed once; else "sdpa")
        batch_ladder: bool | None = None,  # round batch sizes up to ladder_size(); None: with graphs
        # CPU: torch threads while decoding (restored after); "auto": time 1 and all threads on the first
        # steps of each call and keep the faster; None: as set
        cpu_threads: int | str | None = None,
        lean: bool | None = None,  # fused norms and residual adds, no all-zero masks; None: in bf16 / fp16
    ):
        if attention not in (*ATTENTION_KINDS, "auto"):
            raise ValueError(f"attention={attention!r}; use one of {ATTENTION_KINDS} or 'auto'")
        self.config = model.config
        self.weights = DecoderWeights(model)
        self.device = self.weights.embedding.device
        self.dtype = self.weights.embedding.dtype
        on_cuda = self.device.type == "cuda"
        self.use_graphs = on_cuda if use_cuda_graphs is None else use_cuda_graphs
        if self.use_graphs and not on_cuda:
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
        # lean steps on CUDA time both kinds on the first batch
        self.attention = attention if attention != "auto" or (self.lean and on_cuda) else "sdpa"
        self._cross_masked = True
        self._batch: _LoadedBatch | None = None
        self.stats = DecodeStats(attention=self.attention)
        self._cache: StaticDecodeCache | None = None
        self._bias_table: torch.Tensor | None = None
        self._graphs: dict[tuple, torch.cuda.CUDAGraph] = {}  # (rows, keys, source, min, masked)
        self._pool = None

    # ------------------------------------------------------------------ public
    def generate(
        self,
        encoder_states: torch.Tensor,  # (B, S, d_model)
        attention_mask: torch.Tensor,  # (B, S)
        max_new_tokens: int,
        min_new_tokens: int = 0,
    ) -> torch.Tensor:
        """(B, T) generated ids without the start token, pad after EOS, T = the longest output."""
        B, S, _ = encoder_states.shape
        self.prepare(B, S, max_new_tokens, padded=not bool(attention_mask.all()))
        self.load(0, encoder_states, attention_mask)
        return self.decode(min_new_tokens)

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
    def decode(self, min_new_tokens: int = 0) -> torch.Tensor:
        """Decode the batch prepare() loaded: (B, T) ids, as generate()."""
        batch, self._batch = self._batch, None
        if batch is None or batch.loaded != batch.size:
            raise RuntimeError("decode() needs prepare() and load() of every row first")
        if not 0 <= min_new_tokens <= batch.max_new_tokens:
            raise ValueError(f"min_new_tokens must be in [0, {batch.max_new_tokens}], got {min_new_tokens}")
        threads = torch.get_num_threads()
        probe = None
        if self.cpu_threads == "auto":
            probe = _ThreadProbe([1, threads]) if threads > 1 else None
        elif self.cpu_threads:
            torch.set_num_threads(self.cpu_threads)
        try:
            return self._decode(batch, min_new_tokens, probe)
        finally:
            torch.set_num_threads(threads)

    def release(self) -> None:
        """Drop the cache and the captured graphs (their memory goes back to the allocator)."""
        self._graphs.clear()
        self._cache = self._bias_table = self._pool = None

    # ------------------------------------------------------------------ internals
    def _decode(self, batch: _LoadedBatch, min_new_tokens: int, probe: _ThreadProbe | None) -> torch.Tensor:
        cfg, cache = self.config, self._cache
        B, rows, source_len, max_new_tokens = batch.size, batch.rows, batch.source_len, batch.max_new_tokens
        if self.attention == "auto":
            self._choose_attention(rows, source_len, min_new_tokens)
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
                    min_new_tokens,
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

    def _step(self, rows: int, key_len: int, source_len: int, min_new_tokens: int, attention: str) -> None:
        decode_step(
            self.weights,
            self._cache,
            self._bias_table,
            rows,
            key_len,
            source_len,
            self.config.eos_token_id,
            min_new_tokens,
            attention,
            self.lean,
            self._cross_masked,
        )

    def _run_step(self, rows: int, key_len: int, source_len: int, min_new_tokens: int) -> None:
        if not self.use_graphs:
            self._step(rows, key_len, source_len, min_new_tokens, self.attention)
            return
        key = (rows, key_len, source_len, min_new_tokens, self._cross_masked)
        graph = self._graphs.get(key)
        if graph is None:
            try:
                graph = self._graphs[key] = self._capture(
                    rows, key_len, source_len, min_new_tokens, self.attention
                )
            except Exception as err:  # a kernel that cannot be captured: slower, still correct
                logger.warning("CUDA graph capture failed, decoding without graphs: %s", err)
                self.stats.graph_error = f"{type(err).__name__}: {err}"[:300]
                self.use_graphs = False
                self._graphs.clear()
                self._step(rows, key_len, source_len, min_new_tokens, self.attention)
                return
        graph.replay()

    def _capture(
        self, rows: int, key_len: int, source_len: int, min_new_tokens: int, attention: str
    ) -> torch.cuda.CUDAGraph:
        cache = self._cache
        saved = cache.snapshot()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph: lazy library initialisation
            self._step(rows, key_len, source_len, min_new_tokens, attention)
        torch.cuda.current_stream().wait_stream(side)
        cache.restore(saved)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            self._step(rows, key_len, source_len, min_new_tokens, attention)
        self.stats.graphs_captured += 1
        return graph

    def _choose_attention(self, rows: int, source_len: int, min_new_tokens: int, replays: int = 10) -> None:
        """Time one full-length step with each attention kernel on this batch shape; keep the faster."""
        key_len = self._cache.shape.target_len
        saved = self._cache.snapshot()
        timings = {}
        for kind in ATTENTION_KINDS:
            try:
                graph = self._capture(rows, key_len, source_len, min_new_tokens, kind)
            except Exception as err:
                logger.warning("attention %s cannot be captured: %s", kind, err)
                continue
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            graph.replay()
            start.record()
            for _ in range(replays):
                self._cache.step.zero_()
                graph.replay()
            end.record()
            end.synchronize()
            timings[kind] = start.elapsed_time(end) / replays
            self._cache.restore(saved)
            del graph
        self.attention = min(timings, key=timings.__getitem__) if timings else "matmul"
        self.stats.attention = self.attention
        self.stats.attention_ms = {kind: round(ms, 4) for kind, ms in timings.items()}
        logger.info("decode step attention: %s (ms per step: %s)", self.attention, timings)
