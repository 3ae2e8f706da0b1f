"""Fixtures for the training tests: a small mixed data file cut from the real corpora, and tiny run specs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from model.artifacts import shared_data_dir
from model.training.data import load_bbc, load_goemotions
from tests.web.conftest import admin, app, app_factory, client  # noqa: F401 - the API tests' fixtures

# one-layer model with dropout on, so resume tests also cover the RNG state
TINY_MODEL = dict(d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=1, num_decoder_layers=1,
                  tie_word_embeddings=True, dropout_rate=0.1, max_input_length=48)
TINY_TRAIN = dict(max_steps=6, warmup_steps=2, batch_size=4, max_tokens_per_batch=256, max_input_length=48,
                  max_summary_length=16, eval_every=3, log_every=1, learning_rate=3e-3, time_budget_s=None)
TINY_EVAL = dict(max_input_length=48, max_new_tokens=8, max_summary_examples=4, batch_size=8)


@pytest.fixture(scope="session")
def mixed_rows() -> list[dict[str, Any]]:
    """~60 rows: BBC articles (shortened, with summary and topic) and GoEmotions comments (emotions)."""
    bbc = load_bbc(shared_data_dir())
    rows = [{"text": e.text[:400], "summary": e.summary[:120], "topic": e.topic} for e in bbc[::75]]
    goemotions = load_goemotions(shared_data_dir())[:40]
    rows += [{"text": e.text, "emotions": list(e.emotions)} for e in goemotions]
    return rows


@pytest.fixture(scope="session")
def mixed_file(mixed_rows, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "mixed.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in mixed_rows))
    return path


def make_tiny_params(mixed_file: Path) -> dict[str, Any]:
    return {"recipe": "starter", "datasets": [str(mixed_file)], "model": dict(TINY_MODEL),
            "train": dict(TINY_TRAIN), "eval": dict(TINY_EVAL), "baselines": False,
            "split_fractions": [0.6, 0.2, 0.2], "time_limit_s": None}


@pytest.fixture()
def tiny_params(mixed_file) -> dict[str, Any]:
    """Run params (a training-run row's params) for a seconds-long scratch run on the mixed file."""
    return make_tiny_params(mixed_file)


@pytest.fixture(scope="session")
def tiny_run(mixed_file, tmp_path_factory) -> Any:
    """One tiny multitask run, trained once per session: (RunOutcome, progress reports)."""
    from model.training.run import spec_from_params, train_version

    reports: list[Any] = []
    spec = spec_from_params(make_tiny_params(mixed_file))
    outcome = train_version(spec, tmp_path_factory.mktemp("models") / "v1", shared_root=shared_data_dir(),
                            callback=reports.append, device="cpu")
    return outcome, reports
