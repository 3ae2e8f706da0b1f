"""Where settings point when the environment leaves them out."""
from __future__ import annotations

import os
import subprocess
import sys
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


def test_an_inference_worker_with_an_unusable_setting_does_not_start(database_url, redis_url, tmp_path):
    """It exits at once naming the variable (Celery would only log a start-up handler's exception, and the
    first model load would then be recorded as the version's failure)."""
    env = {**os.environ, "DATABASE_URL": database_url, "BROKER_URL": redis_url,
           "LEXIMIND_DATA_DIR": str(tmp_path), "LEXIMIND_INFER_DTYPE": "float16"}
    done = subprocess.run([sys.executable, "-m", "leximind.cli", "worker", "-Q", "infer"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "LEXIMIND_INFER_DTYPE must be one of float32, bfloat16, got 'float16'" in done.stderr
