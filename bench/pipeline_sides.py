"""The two sides of the pipeline benchmark (bench/pipeline.py) and their inputs: random token documents, our
pipeline and transformers' generate run on them, how far their outputs agree, and the stop token that gives
a random model outputs of varied lengths."""

from __future__ import annotations

import time

import torch

from bench.hf_reference import hf_generate
from bench.measure import release, synchronize
from model.batching import padding_waste, plan_batches
from model.pipeline import Pipeline, PipelineConfig

EOS = 1


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


def make_pipeline(
    model, batch: int, in_len: int, out_len: int, min_len: int, device, encoder_rows: int | None = None
) -> Pipeline:
    """`encoder_rows`: documents per encoder pass (None: the pipeline's default for the device)."""
    config = PipelineConfig(
        max_summary_tokens=out_len,
        min_summary_tokens=min_len,
        max_batch_rows=batch,
        max_batch_tokens=batch * in_len,
        encoder_batch_tokens=encoder_rows * in_len if encoder_rows else None,
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
        # a failed capture turns graphs off for the rest of the run: then eager steps count up here
        "graph_steps": stats.graph_steps - stats_before["graph_steps"],
        "eager_steps": stats.eager_steps - stats_before["eager_steps"],
        "attention": stats.attention,
        "attention_ms": stats.attention_ms,
        "graph_error": stats.graph_error,
        "cpu_threads": stats.cpu_threads,
    }
    return outputs, seconds, work


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
