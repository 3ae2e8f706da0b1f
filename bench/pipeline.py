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
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from bench.hf_reference import build_reference, hf_generate, save_checkpoint  # noqa: E402
from bench.measure import PeakMemory, release, synchronize  # noqa: E402
from bench.pipeline_sides import (  # noqa: E402
    EOS,
    agreement,
    choose_stop_token,
    make_pipeline,
    make_stop_token,
    pad,
    random_documents,
    run_ours,
    run_transformers,
)
from model import load_pretrained  # noqa: E402

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
        shape="base", in_len=512, out_len=128, configs="32,256,encoder,128,1,mixed,512", rounds=2, mixed_docs=512
    ),
}


# ---------------------------------------------------------------------------------------------- configurations
def bench_fixed(models, args, batch: int, device, dtype) -> dict:
    """Batches of `batch` documents of in_len tokens, exactly out_len new tokens each."""
    ours_model, hf = models
    count = max(batch * args.rounds, -(-args.min_docs // batch) * batch)
    docs = random_documents(count, [args.in_len] * count, ours_model.config.vocab_size, seed=batch)
    warm = docs[:batch]
    with PeakMemory(device) as ours_mem:
        pipeline = make_pipeline(
            ours_model, batch, args.in_len, args.out_len, args.out_len, device, args.encoder_batch_rows
        )
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
        pipeline = make_pipeline(ours_model, batch, args.in_len, args.out_len, 0, device, args.encoder_batch_rows)
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


def bench_encoder(models, args, device) -> dict:
    """The encoder alone on one batch of mixed_batch documents of in_len tokens: ours in passes of several
    sizes (documents per pass: memory against launches), transformers' encoder on the whole batch."""
    ours_model, hf = models
    batch = args.mixed_batch
    docs = random_documents(batch, [args.in_len] * batch, ours_model.config.vocab_size, seed=5)
    ids, mask = pad(docs, device)
    line = {"config": f"encoder-b{batch}", "shape": args.shape, "in_len": args.in_len}

    def timed(run) -> tuple[float, float]:
        run()  # warm-up
        with PeakMemory(device) as memory:
            synchronize(device)
            started = time.perf_counter()
            run()
            synchronize(device)
            seconds = time.perf_counter() - started
        return round(batch / seconds, 1), round(memory.peak / 2**20, 1)

    for rows in sorted({r for r in (8, 32, 128, batch) if r <= batch}):
        pipeline = make_pipeline(ours_model, batch, args.in_len, 1, 0, device, encoder_rows=rows)

        def run_ours(pipeline=pipeline) -> None:
            for _ in pipeline._encoder_passes(ids, mask):
                pass

        with torch.inference_mode():
            line[f"ours_rows{rows}_docs_per_s"], line[f"ours_rows{rows}_peak_mb"] = timed(run_ours)
        del pipeline
        release(device)
    with torch.inference_mode():
        line["hf_docs_per_s"], line["hf_peak_mb"] = timed(lambda: hf.encoder(input_ids=ids, attention_mask=mask))
    release(device)
    return line


def report(
    kind, batch, docs, args, dtype, ours_out, ours_s, ours_mem, ours_work, hf_out, hf_s, hf_mem, extra
) -> dict:
    ours_rate, hf_rate = len(docs) / ours_s, len(docs) / hf_s
    line = {
        "config": f"{kind}-b{batch}",
        "shape": args.shape,
        "device": args.device,
        "dtype": str(dtype).removeprefix("torch."),
        **({"baseline_dtype": args.baseline_dtype} if args.baseline_dtype else {}),
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
    if dtype == torch.float32 and args.baseline_dtype in (None, "float32"):
        line["tokens_identical"] = ours_out == hf_out
    return line


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
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    with torch.inference_mode(), profile(activities=activities) as prof:  # the encoder's kernels, one batch
        for _ in pipeline._encoder_passes(ids, mask):
            pass
    tables = [
        f"== encoder, batch {batch}, {pipeline.encoder_batch_tokens // args.in_len} documents per pass\n"
        + prof.key_averages().table(sort_by=sort, row_limit=25)
    ]
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
    p.add_argument(
        "--configs",
        help="comma-separated: batch sizes of fixed-length runs, 'mixed', and 'encoder' (the encoder alone)",
    )
    p.add_argument("--encoder-batch-rows", type=int, help="ours: documents per encoder pass (default: device's)")
    p.add_argument("--rounds", type=int, help="timed batches per fixed-length configuration")
    p.add_argument("--mixed-docs", type=int, help="documents in the mixed-length configuration")
    p.add_argument("--mixed-batch", type=int, help="largest batch of the mixed configuration (both sides)")
    p.add_argument("--repeats", type=int, help="timed runs per side, alternating; the best counts")
    p.add_argument("--min-docs", type=int, default=3, help="at least this many documents per configuration")
    p.add_argument(
        "--dtype", choices=["float32", "bfloat16"], help="default: bfloat16 on cuda, float32 on cpu"
    )
    p.add_argument(
        "--baseline-dtype",
        choices=["float32", "bfloat16"],
        help="transformers' dtype when it should differ from ours (default: the same as --dtype)",
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
    hf = hf.to(device=device, dtype=getattr(torch, args.baseline_dtype) if args.baseline_dtype else dtype)
    models = (ours, hf)
    emit({"config": "setup", "seconds": round(time.perf_counter() - started, 1)}, out)
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        if time.perf_counter() - started > args.time_budget_s:
            emit({"config": name, "skipped": "time budget"}, out)
            continue
        with error_line(name, out):
            if name == "mixed":
                emit(bench_mixed(models, args, device, dtype), out)
            elif name == "encoder":
                emit(bench_encoder(models, args, device), out)
            else:
                emit(bench_fixed(models, args, int(name), device, dtype), out)
    if args.profile_out:
        with error_line("profile", out):
            emit(profile_decode(ours, args, device, args.profile_out), out)
    emit({"config": "done", "seconds": round(time.perf_counter() - started, 1)}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
