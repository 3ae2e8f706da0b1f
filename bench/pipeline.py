"""Summarisation throughput: our pipeline against transformers' generate, same weights, same inputs, one run.

    python bench/pipeline.py --device cpu --shape small            # 256 -> 64 tokens, batches 1, 8, 32
    python bench/pipeline.py --device cuda --shape base --out x.jsonl   # 512 -> 128, batches 1..256 + mixed

One random-weight T5 of the given shape is built with transformers (seeded), saved, and loaded into our
stack, so both sides run identical weights. Fixed-length configurations force exactly `out_len` new tokens
on both sides (min_new_tokens = max_new_tokens, greedy) and check the outputs agree: identical tokens in
fp32, the share of identical tokens in bf16. The mixed configuration draws input lengths at random and
lets rows stop at EOS (the EOS logit is scaled so that outputs have varied lengths), and reports the
padding both sides compute for nothing. Each configuration prints one JSON line; a failing configuration
prints an error line and the run goes on.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from bench.hf_reference import build_reference, hf_generate, save_checkpoint  # noqa: E402
from model import load_pretrained  # noqa: E402
from model.batching import padding_waste, plan_batches  # noqa: E402
from model.pipeline import Pipeline, PipelineConfig  # noqa: E402

EOS = 1
DEFAULTS = {
    "cpu": dict(
        shape="small",
        in_len=256,
        out_len=64,
        configs="8,1,32,mixed",
        rounds=1,
        repeats=2,
        mixed_docs=32,
        mixed_batch=8,
    ),
    # most wanted first: a time budget skips from the end
    "cuda": dict(
        shape="base", in_len=512, out_len=128, configs="32,256,128,1,mixed,512", rounds=2, mixed_docs=512
    ),
}


# ---------------------------------------------------------------------------------------------- memory
class PeakMemory:
    """Peak bytes allocated above the level at start: the CUDA allocator's peak on a GPU; on a CPU, glibc's
    bytes in use (mallinfo2, sampled every few ms), which unlike RSS does not depend on which side ran first."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
        else:
            self._start = self._max = heap_in_use()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._start
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._max, heap_in_use()) - self._start

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._max = max(self._max, heap_in_use())


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")
    ]  # fmt: skip


@functools.cache
def _mallinfo2():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        return libc.mallinfo2
    except (OSError, AttributeError):  # not glibc >= 2.33
        return None


def heap_in_use() -> int:
    """Bytes malloc has handed out and not taken back (small blocks + mmapped large blocks); RSS elsewhere."""
    mallinfo2 = _mallinfo2()
    if mallinfo2 is not None:
        info = mallinfo2()
        return info.uordblks + info.hblkhd
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------- inputs
def random_documents(count: int, lengths: list[int], vocab: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(5, vocab - 100, (n - 1,), generator=g).tolist() + [EOS] for n in lengths[:count]]


def pad(docs: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(d) for d in docs)
    ids = torch.zeros((len(docs), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, doc in enumerate(docs):
        ids[row, : len(doc)] = torch.tensor(doc)
        mask[row, : len(doc)] = 1
    return ids.to(device), mask.to(device)


def strip_after_eos(row: list[int]) -> list[int]:
    return row[: row.index(EOS) + 1] if EOS in row else row


def agreement(ours: list[list[int]], theirs: list[list[int]]) -> dict:
    """Share of positions (over the longer output of each pair) and of documents that are identical."""
    same = total = rows = 0
    for a, b in zip(ours, theirs, strict=True):
        width = max(len(a), len(b))
        same += sum(1 for x, y in zip(a, b, strict=False) if x == y)
        total += width
        rows += a == b
    return {
        "tokens_identical_share": round(same / max(total, 1), 4),
        "docs_identical_share": round(rows / len(ours), 4),
    }


# ---------------------------------------------------------------------------------------------- the two sides
def run_transformers(
    hf, docs: list[list[int]], batch: int, out_len: int, min_len: int, device
) -> tuple[list, float, dict]:
    """transformers' generate over batches of `batch` documents in input order (what a user would write)."""
    outputs, row_steps = [], 0
    synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(docs), batch):
            ids, mask = pad(docs[i : i + batch], device)
            out = hf_generate(hf, ids, mask, out_len, min_len).cpu()
            row_steps += out.shape[0] * out.shape[1]
            outputs += [strip_after_eos(row) for row in out.tolist()]
    seconds = time.perf_counter() - start
    batches = [list(range(i, min(i + batch, len(docs)))) for i in range(0, len(docs), batch)]
    work = {
        "encoder_padding_waste": round(padding_waste([len(d) for d in docs], batches), 4),
        "decoder_waste": round(1 - sum(len(o) for o in outputs) / max(row_steps, 1), 4),
    }
    return outputs, seconds, work


def make_pipeline(model, batch: int, in_len: int, out_len: int, min_len: int, device) -> Pipeline:
    config = PipelineConfig(
        max_summary_tokens=out_len,
        min_summary_tokens=min_len,
        max_batch_rows=batch,
        max_batch_tokens=batch * in_len,
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
    )
    return Pipeline.for_model(model, version="bench", device=device, config=config)


def run_ours(pipeline: Pipeline, docs: list[list[int]], device) -> tuple[list, float, dict]:
    synchronize(device)
    stats_before = dict(vars(pipeline.decoder.stats))
    stages_before = dict(pipeline.stage_seconds)
    start = time.perf_counter()
    outputs = pipeline.generate_ids(docs)
    seconds = time.perf_counter() - start
    stats = pipeline.decoder.stats
    row_steps = stats.row_steps - stats_before["row_steps"]
    tokens = stats.tokens - stats_before["tokens"]
    steps = stats.steps - stats_before["steps"]
    decode_s = pipeline.stage_seconds.get("summarize_s", 0) - stages_before.get("summarize_s", 0)
    batches = plan_batches([len(d) for d in docs], pipeline.budget)
    work = {
        "encode_s": round(pipeline.stage_seconds.get("encode_s", 0) - stages_before.get("encode_s", 0), 4),
        "decode_s": round(decode_s, 4),
        "decode_step_ms": round(1000 * decode_s / max(steps, 1), 3),
        "encoder_padding_waste": round(padding_waste([len(d) for d in docs], batches), 4),
        "decoder_waste": round(1 - tokens / max(row_steps, 1), 4),
        "compactions": stats.compactions - stats_before["compactions"],
        "graphs": stats.graphs_captured,
        "attention": stats.attention,
        "attention_ms": stats.attention_ms,
        "graph_error": stats.graph_error,
        "cpu_threads": stats.cpu_threads,
    }
    return outputs, seconds, work


# ---------------------------------------------------------------------------------------------- configurations
def bench_fixed(models, args, batch: int, device, dtype) -> dict:
    """Batches of `batch` documents of in_len tokens, exactly out_len new tokens each."""
    ours_model, hf = models
    count = max(batch * args.rounds, -(-args.min_docs // batch) * batch)
    docs = random_documents(count, [args.in_len] * count, ours_model.config.vocab_size, seed=batch)
    warm = docs[:batch]
    with PeakMemory(device) as ours_mem:
        pipeline = make_pipeline(ours_model, batch, args.in_len, args.out_len, args.out_len, device)
        pipeline.generate_ids(warm)  # warm-up: kernels, graph capture, attention choice
        ours_out, ours_s, ours_work = run_ours(pipeline, docs, device)
    with PeakMemory(device) as hf_mem:
        ids, mask = pad(warm[: min(batch, 4)], device)
        with torch.inference_mode():
            hf_generate(hf, ids, mask, 4, 4)  # warm-up
        hf_out, hf_s, _ = run_transformers(hf, docs, batch, args.out_len, args.out_len, device)
    for _ in range(args.repeats - 1):  # alternate the sides; the best time of each (CPU load comes and goes)
        _, seconds, work = run_ours(pipeline, docs, device)
        if seconds < ours_s:
            ours_s, ours_work = seconds, work
        hf_s = min(hf_s, run_transformers(hf, docs, batch, args.out_len, args.out_len, device)[1])
    del pipeline
    release(device)
    extra = {"repeats": args.repeats} if args.repeats > 1 else {}
    return report(
        "fixed", batch, docs, args, dtype, ours_out, ours_s, ours_mem, ours_work, hf_out, hf_s, hf_mem, extra
    )


def bench_mixed(models, args, device, dtype) -> dict:
    """Random input lengths, real EOS stopping; ours buckets by length, transformers takes input order."""
    ours_model, hf = models
    g = torch.Generator().manual_seed(7)
    lengths = torch.randint(16, args.in_len + 1, (args.mixed_docs,), generator=g).tolist()
    docs = random_documents(args.mixed_docs, lengths, ours_model.config.vocab_size, seed=11)
    batch = args.mixed_batch
    stop_token = choose_stop_token(ours_model, docs[: min(64, len(docs))], args, device)
    docs = make_stop_token(ours_model, hf, stop_token, docs)
    with PeakMemory(device) as ours_mem:
        pipeline = make_pipeline(ours_model, batch, args.in_len, args.out_len, 0, device)
        pipeline.generate_ids(docs)  # warm-up over the whole corpus: captures every graph shape it needs
        ours_out, ours_s, ours_work = run_ours(pipeline, docs, device)
    del pipeline
    release(device)
    with PeakMemory(device) as hf_mem:
        hf_out, hf_s, hf_work = run_transformers(hf, docs, batch, args.out_len, 0, device)
    release(device)
    make_stop_token(ours_model, hf, stop_token, [])  # swap back: later configurations see the original model
    extra = {
        "stop_token": stop_token,
        "mean_out_len": round(statistics.mean(len(o) for o in ours_out), 1),
        "stopped_share": round(sum(o[-1] == EOS for o in ours_out) / len(ours_out), 3),
        "hf_encoder_padding_waste": hf_work["encoder_padding_waste"],
        "hf_decoder_waste": hf_work["decoder_waste"],
    }
    return report(
        "mixed", batch, docs, args, dtype, ours_out, ours_s, ours_mem, ours_work, hf_out, hf_s, hf_mem, extra
    )


def choose_stop_token(model, sample, args, device, target: float = 0.4) -> int:
    """A random model rarely says EOS. Pick the token whose first appearance in the sample's greedy outputs
    comes, in the median row, closest to target x out_len, among tokens most rows say at all; once it
    trades places with EOS (make_stop_token), every row stops where it would have said it."""
    pipeline = make_pipeline(model, len(sample), args.in_len, args.out_len, args.out_len, device)
    out = torch.tensor(pipeline.generate_ids(sample))  # (R, N), all full length
    del pipeline
    release(device)
    rows, steps = out.shape
    first = torch.full((rows, model.config.vocab_size), steps)
    first.scatter_reduce_(1, out, torch.arange(steps).expand(rows, steps).contiguous(), reduce="amin")
    first[:, [0, EOS]] = steps  # pad and EOS themselves are not candidates
    appears = (first < steps).float().mean(0)  # (V,) share of rows that say the token
    distance = (first.float().median(dim=0).values - target * steps).abs()
    for share in (0.6, 0.4, 0.2, 0.0):
        candidates = appears > share
        if candidates.any():
            return int(torch.where(candidates, distance, float("inf")).argmin())
    return EOS


@torch.no_grad()
def make_stop_token(ours_model, hf, token: int, docs: list[list[int]]) -> list[list[int]]:
    """Swap the LM-head rows of `token` and EOS in both models (identical values). A tied head is the
    embedding too, so the documents' ids are swapped as well and the encoder sees what it saw before."""
    ours_head = (
        ours_model.lm_head.weight if ours_model.lm_head is not None else ours_model.token_embedding.weight
    )
    for head in {id(h): h for h in (ours_head, hf.lm_head.weight)}.values():
        head[[token, EOS]] = head[[EOS, token]]
    if ours_model.lm_head is not None:
        return docs
    swap = {token: EOS, EOS: token}
    return [[swap.get(t, t) for t in doc] for doc in docs]


def report(
    kind, batch, docs, args, dtype, ours_out, ours_s, ours_mem, ours_work, hf_out, hf_s, hf_mem, extra
) -> dict:
    ours_rate, hf_rate = len(docs) / ours_s, len(docs) / hf_s
    line = {
        "config": f"{kind}-b{batch}",
        "shape": args.shape,
        "device": args.device,
        "dtype": str(dtype).removeprefix("torch."),
        "batch": batch,
        "docs": len(docs),
        "in_len": args.in_len if kind == "fixed" else "16-" + str(args.in_len),
        "out_len": args.out_len if kind == "fixed" else "<=" + str(args.out_len),
        "ours_docs_per_s": round(ours_rate, 3),
        "hf_docs_per_s": round(hf_rate, 3),
        "ratio": round(ours_rate / hf_rate, 2),
        "ours_peak_mb": round(ours_mem.peak / 2**20, 1),
        "hf_peak_mb": round(hf_mem.peak / 2**20, 1),
        **agreement(ours_out, hf_out),
        **{f"ours_{k}": v for k, v in ours_work.items()},
        **extra,
    }
    if dtype == torch.float32:
        line["tokens_identical"] = ours_out == hf_out
    return line


def release(device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def profile_decode(model, args, device, path: Path, batch: int = 256, steps: int = 16) -> dict:
    """Kernel times of our decoding steps (run eagerly, so every kernel shows) at `batch` rows."""
    from torch.profiler import ProfilerActivity, profile

    from model.fast_decode import GreedyDecoder

    docs = random_documents(batch, [args.in_len] * batch, model.config.vocab_size, seed=3)
    ids, mask = pad(docs, device)
    pipeline = make_pipeline(model, batch, args.in_len, steps, steps, device)
    with torch.inference_mode():
        states = torch.cat([part for _, part, _ in pipeline._encoder_passes(ids, mask)])
    results = {"config": "profile", "batch": batch, "steps": steps}
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    tables = []
    for kind in ("sdpa", "matmul"):
        decoder = GreedyDecoder(
            model,
            use_cuda_graphs=False,
            batch_ladder=True,
            sync_every=8,
            key_block=16,
            source_block=64,
            attention=kind,
            lean=dtype_is_half(model),
        )
        decoder.generate(states, mask, steps, steps)  # warm-up
        with profile(activities=activities) as prof:
            decoder.generate(states, mask, steps, steps)
        averages = prof.key_averages()
        sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
        tables.append(
            f"== attention={kind}, batch {batch}, {steps} eager steps\n"
            + averages.table(sort_by=sort, row_limit=30)
        )
        total_us = sum(getattr(e, sort, 0) for e in averages)
        kernels = sum(e.count for e in averages if getattr(e, sort, 0) > 0)
        results[f"{kind}_device_ms_per_step"] = round(total_us / 1000 / steps, 3)
        results[f"{kind}_kernels_per_step"] = round(kernels / steps, 1)
        del decoder
        release(device)
    path.write_text("\n\n".join(tables))
    results["table"] = str(path)
    return results


def dtype_is_half(model) -> bool:
    return next(model.parameters()).dtype in (torch.bfloat16, torch.float16)


# ---------------------------------------------------------------------------------------------- main
@contextmanager
def error_line(config: str, out):
    try:
        yield
    except Exception as err:  # one failing configuration must not cost the others
        emit(
            {
                "config": config,
                "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc()[-1500:],
            },
            out,
        )
        release(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def emit(line: dict, out) -> None:
    text = json.dumps(line)
    print(text, flush=True)
    if out is not None:
        out.write(text + "\n")
        out.flush()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    p.add_argument("--shape", choices=["tiny", "small", "base"])
    p.add_argument("--in-len", type=int)
    p.add_argument("--out-len", type=int)
    p.add_argument("--configs", help="comma-separated: batch sizes of fixed-length runs, and 'mixed'")
    p.add_argument("--rounds", type=int, help="timed batches per fixed-length configuration")
    p.add_argument("--mixed-docs", type=int, help="documents in the mixed-length configuration")
    p.add_argument("--mixed-batch", type=int, help="largest batch of the mixed configuration (both sides)")
    p.add_argument("--repeats", type=int, help="timed runs per side, alternating; the best counts")
    p.add_argument("--min-docs", type=int, default=3, help="at least this many documents per configuration")
    p.add_argument(
        "--dtype", choices=["float32", "bfloat16"], help="default: bfloat16 on cuda, float32 on cpu"
    )
    p.add_argument("--threads", type=int, help="CPU: torch threads for both sides (default: torch's)")
    p.add_argument("--time-budget-s", type=float, default=float("inf"), help="skip configurations after this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    p.add_argument("--profile-out", type=Path, help="write a kernel profile of our decoding steps here")
    args = p.parse_args(argv)
    for key, value in DEFAULTS[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    dtype = (
        getattr(torch, args.dtype)
        if args.dtype
        else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    out = open(args.out, "a") if args.out else None  # noqa: SIM115
    started = time.perf_counter()
    emit(
        {
            "config": "env",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "device_name": torch.cuda.get_device_name()
            if device.type == "cuda"
            else f"cpu x{torch.get_num_threads()} threads",
            "load_avg": os.getloadavg()[0],
            "shape": args.shape,
        },
        out,
    )
    hf = build_reference(args.shape, seed=args.seed)
    with tempfile.TemporaryDirectory() as folder:
        ours = load_pretrained(save_checkpoint(hf, folder), device=device, dtype=dtype)
    hf = hf.to(device=device, dtype=dtype)
    models = (ours, hf)
    emit({"config": "setup", "seconds": round(time.perf_counter() - started, 1)}, out)
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        if time.perf_counter() - started > args.time_budget_s:
            emit({"config": name, "skipped": "time budget"}, out)
            continue
        with error_line(name, out):
            if name == "mixed":
                emit(bench_mixed(models, args, device, dtype), out)
            else:
                emit(bench_fixed(models, args, int(name), device, dtype), out)
    if args.profile_out:
        with error_line("profile", out):
            emit(profile_decode(ours, args, device, args.profile_out), out)
    emit({"config": "done", "seconds": round(time.perf_counter() - started, 1)}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
