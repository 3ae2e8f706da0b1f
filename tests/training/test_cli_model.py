"""`leximind train`, `leximind evaluate` and `leximind predict`, called in-process."""
from __future__ import annotations

import json

from leximind.cli import main
from model.artifacts import create_random_artifact, load_artifact


def test_train_then_evaluate_then_predict(mixed_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEXIMIND_MODELS_DIR", str(tmp_path / "models"))
    output = tmp_path / "cli-v1"
    code = main(["train", "--recipe", "starter", "--data", str(mixed_file), "--output", str(output),
                 "--set", "train.max_steps=2", "--set", "train.max_input_length=32", "--set", "model.d_model=32",
                 "--set", "model.d_kv=8", "--set", "model.d_ff=32", "--set", "model.num_layers=1",
                 "--set", "model.num_decoder_layers=1", "--set", "eval.max_new_tokens=4",
                 "--set", "eval.max_summary_examples=2", "--set", "baselines=false",
                 "--set", "split_fractions=[0.6,0.2,0.2]", "--device", "cpu"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["folder"] == str(output) and report["training"]["steps"] == 2
    assert load_artifact(output).manifest["run_spec"]["train"]["max_steps"] == 2

    assert main(["evaluate", str(output), "--max-summary-examples", "2", "--device", "cpu"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["version"] == "cli-v1" and {"topic", "emotion", "summary"} <= set(scores)

    assert main(["predict", str(output), "--text", "The striker scored twice in the cup final.",
                 "--max-new-tokens", "4", "--device", "cpu"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["topic"]["label"] in load_artifact(output).labels["topic"]
    assert len(row["emotions"]) == len(load_artifact(output).labels["emotion"]) and isinstance(row["summary"], str)


def test_predict_refuses_a_corrupted_version(tmp_path, capsys):
    folder = create_random_artifact(tmp_path / "v1")
    (folder / "labels.json").write_text("{}")
    assert main(["predict", str(folder), "--text", "hello"]) == 1
    assert "labels.json" in capsys.readouterr().err


def test_train_rejects_unknown_settings(capsys):
    assert main(["train", "--set", "train.max_stepz=3"]) == 2
    assert "max_stepz" in capsys.readouterr().err
