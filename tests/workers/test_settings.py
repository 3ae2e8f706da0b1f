"""Where settings point when the environment leaves them out."""
from __future__ import annotations

from pathlib import Path

from leximind.config import Settings


def test_model_versions_live_under_the_data_dir_unless_told_otherwise(monkeypatch, tmp_path):
    monkeypatch.delenv("LEXIMIND_MODELS_DIR", raising=False)
    monkeypatch.setenv("LEXIMIND_DATA_DIR", str(tmp_path / "instance"))
    # beside the database that names them: a second instance (another data dir) never shares them
    assert Settings().models_dir == (tmp_path / "instance" / "models").resolve()
    monkeypatch.setenv("LEXIMIND_MODELS_DIR", str(tmp_path / "elsewhere"))
    assert Settings().models_dir == (tmp_path / "elsewhere").resolve()
    monkeypatch.delenv("LEXIMIND_DATA_DIR")
    monkeypatch.delenv("LEXIMIND_MODELS_DIR")
    assert Settings().models_dir == Path("var/models").resolve()
