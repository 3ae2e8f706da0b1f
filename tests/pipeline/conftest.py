"""Fixtures for the pipeline tests: a tiny random artifact with the real tokenizer, and text documents.

Imports stay inside the fixtures: the GPU checks run this folder on a machine that has torch and
transformers but neither scikit-learn nor the shared corpora.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory) -> Path:
    from model.artifacts import create_random_artifact

    return create_random_artifact(tmp_path_factory.mktemp("versions") / "tiny-v1", size="tiny", seed=0)


@pytest.fixture(scope="session")
def documents() -> list[str]:
    """Texts of very different lengths, in no particular order."""
    return [
        "Stocks rallied on Monday after the central bank held rates steady.",
        "The match ended in a draw. " * 40,
        "A new phone was announced with a larger screen and a faster chip, and reviewers were impressed.",
        "Parliament debated the budget late into the night. " * 12,
        "Short note.",
    ]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models: one thread is fastest, and it does not stall when other processes hold the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
