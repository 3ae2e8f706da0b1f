"""Version folders: complete, checksummed, atomic, and refused when anything in them changed."""
from __future__ import annotations

import json

import pytest
import torch

from model.artifacts import (
    ArtifactError,
    create_random_artifact,
    goemotions_labels,
    load_artifact,
    manifest_sha256,
    save_artifact,
    verify_artifact,
)


@pytest.fixture(scope="module")
def random_version(tmp_path_factory):
    return create_random_artifact(tmp_path_factory.mktemp("models") / "v1", seed=3)


def test_random_artifact_has_every_file_and_reloads(random_version):
    names = {p.name for p in random_version.iterdir()}
    assert {"config.json", "model.safetensors", "spiece.model", "labels.json", "metrics.json",
            "manifest.json"} <= names
    manifest = json.loads((random_version / "manifest.json").read_text())
    assert set(manifest["files"]) == names - {"manifest.json"}
    assert manifest["version"] == "v1" and manifest["parent"] is None and "code_revision" in manifest
    artifact = load_artifact(random_version)
    config = artifact.model.config
    assert (config.d_model, config.num_layers, config.num_decoder_layers, config.num_heads, config.d_ff) == (
        64, 2, 2, 4, 128)
    assert config.topic_labels == ("business", "entertainment", "politics", "sport", "tech")
    assert config.emotion_labels == goemotions_labels() and len(config.emotion_labels) == 28
    assert artifact.labels["heads_trained"] is False
    assert set(artifact.labels["emotion_thresholds"]) == set(config.emotion_labels)
    assert artifact.tokenizer.encode("Hello world") == [8774, 296, 1]
    assert not any(p.name.startswith(".") for p in random_version.parent.iterdir())  # no staging left behind


def test_same_seed_same_weights(tmp_path, random_version):
    again = load_artifact(create_random_artifact(tmp_path / "again", seed=3)).model.state_dict()
    first = load_artifact(random_version).model.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)


def _copy(folder, target):
    import shutil

    shutil.copytree(folder, target)
    return target


def test_a_flipped_byte_in_the_weights_is_refused(random_version, tmp_path):
    broken = _copy(random_version, tmp_path / "broken")
    weights = broken / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.safetensors fails its checksum"):
        load_artifact(broken)


@pytest.mark.parametrize("damage", ["missing_file", "truncated", "manifest_edited", "no_manifest", "labels_edited"])
def test_other_damage_is_refused_with_a_clear_message(random_version, tmp_path, damage):
    broken = _copy(random_version, tmp_path / damage)
    if damage == "missing_file":
        (broken / "spiece.model").unlink()
        expected = "spiece.model is listed in the manifest but missing"
    elif damage == "truncated":
        (broken / "config.json").write_text("{}")
        expected = "config.json is 2 bytes"
    elif damage == "manifest_edited":
        manifest = json.loads((broken / "manifest.json").read_text())
        del manifest["files"]["labels.json"]
        (broken / "manifest.json").write_text(json.dumps(manifest))
        expected = "does not list"
    elif damage == "no_manifest":
        (broken / "manifest.json").unlink()
        expected = "has no manifest.json"
    else:
        labels = (broken / "labels.json").read_text().replace("0.5", "0.1", 1)
        (broken / "labels.json").write_text(labels)
        expected = "labels.json fails its checksum"
    with pytest.raises(ArtifactError, match=expected):
        verify_artifact(broken)


def test_save_never_overwrites_and_records_parent(random_version, tmp_path):
    artifact = load_artifact(random_version)
    with pytest.raises(ArtifactError, match="already exists"):
        save_artifact(random_version, artifact.model, artifact.tokenizer, artifact.labels, {})
    child = save_artifact(tmp_path / "v2", artifact.model, artifact.tokenizer,
                          {**artifact.labels, "emotion_thresholds": {"joy": 0.3}}, {"note": 1}, parent="v1",
                          extra_manifest={"data_hashes": {"train": "abc"}})
    reloaded = load_artifact(child)
    assert reloaded.manifest["parent"] == "v1" and reloaded.manifest["data_hashes"] == {"train": "abc"}
    assert reloaded.labels["emotion_thresholds"]["joy"] == 0.3
    assert reloaded.labels["emotion_thresholds"]["anger"] == 0.5
    assert reloaded.labels["topic_temperature"] == 1.0  # absent: softmax of the raw logits
    calibrated = load_artifact(save_artifact(tmp_path / "v4", artifact.model, artifact.tokenizer,
                                             {**artifact.labels, "topic_temperature": 1.75}, {}))
    assert calibrated.labels["topic_temperature"] == 1.75
    for wrong in (0, -1.0, "2", float("nan"), float("inf"), True):
        with pytest.raises(ArtifactError, match="topic_temperature must be a positive number"):
            save_artifact(tmp_path / "v5", artifact.model, artifact.tokenizer,
                          {**artifact.labels, "topic_temperature": wrong}, {})
    assert len(manifest_sha256(child)) == 64
    with pytest.raises(ArtifactError, match="does not match the model's heads"):
        save_artifact(tmp_path / "v3", artifact.model, artifact.tokenizer, {"topic": ["a", "b"]}, {})
