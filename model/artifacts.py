"""The versioned artifact: one folder per model version, verified before anything in it is trusted.

A version folder holds ``config.json``, ``model.safetensors``, the tokenizer files (``spiece.model``, ...),
``labels.json``, ``metrics.json`` and ``manifest.json``. The manifest lists the sha256 and size of every
other file, the parent version, the data hashes, the training config and the code revision. A folder is
written under a temporary name beside its final one and renamed into place, so a reader never sees half a
version; ``load_artifact`` checks every hash before it reads a single weight.

labels.json: ``{"topic": [...], "emotion": [...], "emotion_thresholds": {label: float}, "topic_temperature": float,
"heads_trained": bool}`` (the temperature divides the topic logits before the softmax; 1.0 when absent)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from model import ModelConfig, MultiTaskModel, Tokenizer, build_model

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "leximind.artifact/1"
MANIFEST = "manifest.json"
# files every version has; tokenizer files come on top of these
REQUIRED_FILES = ("config.json", "model.safetensors", "labels.json", "metrics.json")
DEFAULT_THRESHOLD = 0.5

BBC_TOPICS = ("business", "entertainment", "politics", "sport", "tech")
# random-weight shapes for tests and benchmarks; "tiny" runs a forward pass in milliseconds on a CPU
RANDOM_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4),
    "small": dict(d_model=256, d_kv=32, d_ff=1024, num_layers=4, num_decoder_layers=4, num_heads=8),
}


class ArtifactError(RuntimeError):
    """A version folder that is missing, incomplete, corrupted or inconsistent."""


@dataclass
class Artifact:
    model: MultiTaskModel
    tokenizer: Tokenizer
    labels: dict[str, Any]
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    path: Path

    @property
    def version(self) -> str:
        return str(self.manifest.get("version") or self.path.name)


# ---------------------------------------------------------------------------------------------- saving
def save_artifact(
    folder: str | Path,
    model: MultiTaskModel,
    tokenizer: Tokenizer,
    labels: dict[str, Any],
    metrics: dict[str, Any],
    *,
    parent: str | None = None,
    extra_manifest: dict[str, Any] | None = None,
    extra_files: dict[str, str | Path] | None = None,
) -> Path:
    """Write a version folder atomically and return its path. An existing folder is never overwritten.

    extra_files (name -> source path: plots, reports) are copied in and checksummed like the rest.
    """
    folder = Path(folder).resolve()
    if folder.exists():
        raise ArtifactError(f"{folder} already exists; a model version is never overwritten, pick a new name")
    folder.parent.mkdir(parents=True, exist_ok=True)
    labels = normalize_labels(labels, model.config)
    staging = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        _write_json(staging / "labels.json", labels)
        _write_json(staging / "metrics.json", metrics)
        for name, source in (extra_files or {}).items():
            if Path(name).name != name or name == MANIFEST or (staging / name).exists():
                raise ArtifactError(f"extra file name {name!r} is not allowed in a version folder")
            shutil.copyfile(source, staging / name)
        missing = [name for name in REQUIRED_FILES if not (staging / name).is_file()]
        if missing:
            raise ArtifactError(f"saving the model did not produce {missing} in {staging}")
        files = {
            path.name: {"sha256": sha256_file(path), "bytes": path.stat().st_size}
            for path in sorted(staging.iterdir())
            if path.is_file()
        }
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": folder.name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "parent": parent,
            "code_revision": code_revision(),
            "torch": torch.__version__,
            **(extra_manifest or {}),
            "files": files,
        }
        _write_json(staging / MANIFEST, manifest)
        _fsync_tree(staging)
        os.rename(staging, folder)  # atomic on one filesystem; fails if folder appeared meanwhile
        _fsync_dir(folder.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("saved model version %s (%d files)", folder, len(files))
    return folder


def normalize_labels(labels: dict[str, Any], config: ModelConfig) -> dict[str, Any]:
    """labels.json in its one shape; the label lists must be the ones the heads were built with."""
    topic = list(labels.get("topic", config.topic_labels))
    emotion = list(labels.get("emotion", config.emotion_labels))
    if tuple(topic) != tuple(config.topic_labels) or tuple(emotion) != tuple(config.emotion_labels):
        raise ArtifactError(
            "labels.json does not match the model's heads: "
            f"topic {topic} vs {list(config.topic_labels)}, emotion {emotion} vs {list(config.emotion_labels)}"
        )
    given = dict(labels.get("emotion_thresholds") or {})
    unknown = sorted(set(given) - set(emotion))
    if unknown:
        raise ArtifactError(f"emotion_thresholds names labels the model does not have: {unknown}")
    thresholds = {label: float(given.get(label, DEFAULT_THRESHOLD)) for label in emotion}
    temperature = labels.get("topic_temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 < temperature < math.inf:
        raise ArtifactError(f"topic_temperature must be a positive number, got {temperature!r}")
    return {
        "topic": topic,
        "emotion": emotion,
        "emotion_thresholds": thresholds,
        "topic_temperature": float(temperature),
        "heads_trained": bool(labels.get("heads_trained", False)),
    }


# --------------------------------------------------------------------------------------------- loading
def verify_artifact(folder: str | Path) -> dict[str, Any]:
    """Check the manifest and every file's sha256; return the manifest. Raises ArtifactError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"model version folder {folder} does not exist")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(f"{folder} has no {MANIFEST}; it is not a complete model version")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{manifest_path} is not valid JSON ({exc}); the version is corrupted") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ArtifactError(f"{manifest_path} is not a {MANIFEST_FORMAT} manifest")
    files = manifest.get("files") or {}
    absent = [name for name in REQUIRED_FILES if name not in files]
    if absent:
        raise ArtifactError(f"{manifest_path} does not list {absent}; the version is incomplete")
    for name, entry in files.items():
        path = folder / name
        if Path(name).name != name:
            raise ArtifactError(f"{manifest_path} lists {name!r}, which is not a plain file name")
        if not path.is_file():
            raise ArtifactError(f"{path} is listed in the manifest but missing; the version is incomplete")
        size = path.stat().st_size
        if size != entry.get("bytes", size):
            raise ArtifactError(
                f"{path} is {size} bytes but the manifest says {entry['bytes']}; the file is truncated or "
                "corrupted: restore the version from a backup or retrain"
            )
        digest = sha256_file(path)
        if digest != entry.get("sha256"):
            raise ArtifactError(
                f"{path} fails its checksum (sha256 {digest[:12]}..., manifest {str(entry.get('sha256'))[:12]}...); "
                "the file was corrupted or modified after it was saved: restore the version from a backup or retrain"
            )
    return manifest


def load_artifact(
    folder: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> Artifact:
    """Verify every file, then load the model (eval mode), tokenizer, labels and metrics."""
    folder = Path(folder).resolve()
    manifest = verify_artifact(folder)
    labels = json.loads((folder / "labels.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    try:
        model = MultiTaskModel.from_folder(folder)
        tokenizer = Tokenizer.from_folder(folder)
    except ArtifactError:
        raise
    except Exception as exc:  # a verified folder that still cannot be built: say which and why
        raise ArtifactError(f"model version {folder} passed its checksums but could not be loaded: {exc}") from exc
    labels = normalize_labels(labels, model.config)
    if device is not None or dtype is not None:
        model = model.to(device=device, dtype=dtype)
    model.eval()
    return Artifact(model=model, tokenizer=tokenizer, labels=labels, metrics=metrics, manifest=manifest, path=folder)


def manifest_sha256(folder: str | Path) -> str:
    """The hash the model-versions table records: sha256 of manifest.json, which pins every other file."""
    return sha256_file(Path(folder) / MANIFEST)


# -------------------------------------------------------------------------------------- random models
def create_random_artifact(
    folder: str | Path,
    *,
    size: str = "tiny",
    topic_labels: tuple[str, ...] | list[str] = BBC_TOPICS,
    emotion_labels: tuple[str, ...] | list[str] | None = None,
    seed: int = 0,
    tokenizer_dir: str | Path | None = None,
) -> Path:
    """A random-weight model with the real T5 tokenizer, for tests and benchmarks (heads_trained=False)."""
    if size not in RANDOM_SIZES:
        raise ValueError(f"size={size!r}; use one of {sorted(RANDOM_SIZES)}")
    if emotion_labels is None:
        emotion_labels = goemotions_labels()
    config = ModelConfig(
        vocab_size=32128,
        topic_labels=tuple(topic_labels),
        emotion_labels=tuple(emotion_labels),
        max_input_length=512,
        **RANDOM_SIZES[size],
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = build_model(config)
    finally:
        torch.random.set_rng_state(generator_state)
    tokenizer = Tokenizer.from_folder(tokenizer_dir or shared_data_dir() / "tokenizer")
    labels = {"topic": list(topic_labels), "emotion": list(emotion_labels), "heads_trained": False}
    return save_artifact(
        folder, model.eval(), tokenizer, labels, {}, extra_manifest={"source": "random", "size": size, "seed": seed}
    )


def shared_data_dir() -> Path:
    from leximind.config import get_settings  # light: settings only, no services

    return get_settings().shared_data


def goemotions_labels() -> tuple[str, ...]:
    path = shared_data_dir() / "emotion" / "emotions.txt"
    return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())


# ------------------------------------------------------------------------------------------- helpers
def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def code_revision() -> str | None:
    """The git commit of this checkout (with "-dirty" when it has local changes), or None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "model"],
            cwd=root, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems do not fsync directories; the rename is still atomic
    finally:
        os.close(fd)
