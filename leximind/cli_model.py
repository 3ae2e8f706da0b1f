"""The model commands of ``leximind``: train, evaluate, predict.

    leximind train --recipe starter --output var/models/starter-1
    leximind train --recipe finetune --init var/models/starter-1 --set train.max_steps=300 --set train.mode=lora
    leximind evaluate var/models/starter-1 --data bbc --data goemotions
    leximind predict var/models/starter-1 --text "Shares rose sharply after the bank cut rates."

Training runs in this process with a progress bar; ``--register`` then records the folder as a model
version (inactive unless ``--activate``). Runs started from the web app go through the training worker.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from leximind.config import Settings

log = logging.getLogger("leximind")


def _missing_input_errors() -> tuple[type[Exception], ...]:
    from model.training.data import DataError

    return DataError, FileNotFoundError


def _missing_input_words(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.filename} does not exist"
    return str(exc)


VERSION_FOLDER = "a model version folder, e.g. $LEXIMIND_DATA_DIR/models/run-3-ab12cd (ls that folder to see them)"


def register(subparsers: argparse._SubParsersAction) -> None:
    words = "train a model version (starter recipe or fine-tuning)"
    train = subparsers.add_parser("train", help=words, description=words[0].upper() + words[1:] + ", in this "
                                  "process; --register records it for the app (runs started from the app go "
                                  "through the training worker).")
    train.add_argument("--recipe", default="starter", help="starter (from scratch) or finetune (default: starter)")
    train.add_argument("--data", action="append", default=None, metavar="NAME|FILE",
                       help="a corpus (bbc, goemotions, ag_news, scitldr, dialogsum) or a .jsonl/.csv/.tsv "
                            "file with text/summary/topic/emotions columns; repeat for several")
    train.add_argument("--init", default=None, help="scratch, a version folder or a T5 checkpoint folder")
    train.add_argument("--output", type=Path, default=None, help="the new version folder (default: under $LEXIMIND_MODELS_DIR, "
                       "i.e. $LEXIMIND_DATA_DIR/models)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting, e.g. train.max_steps=200, train.mode=lora, model.d_model=64 "
                            "(values are JSON, else strings)")
    train.add_argument("--checkpoint-dir", type=Path, default=None,
                       help="checkpoint here as training goes, and resume from a checkpoint found here")
    _common(train)
    train.add_argument("--register", action="store_true", help="record the folder as a model version")
    train.add_argument("--activate", action="store_true", help="with --register: make it the active version")
    train.set_defaults(func=cmd_train)

    words = "score a version folder on the held-out (test) split"
    evaluate = subparsers.add_parser("evaluate", help=words, description=words[0].upper() + words[1:] + ": topic "
                                     "accuracy and macro-F1, emotion F1, summary ROUGE; prints JSON.")
    evaluate.add_argument("folder", type=Path, help=VERSION_FOLDER)
    evaluate.add_argument("--data", action="append", default=None, metavar="NAME|FILE",
                          help="a corpus or a data file to score on (repeatable; default: the version's own)")
    evaluate.add_argument("--max-summary-examples", type=int, default=100,
                          help="test documents to summarise for ROUGE (default: 100)")
    evaluate.add_argument("--max-eval-examples", type=int, default=None, help="per source, for dev and test")
    evaluate.add_argument("--baselines", action="store_true", help="also TF-IDF + LR and lead-3 on the same split")
    _common(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    words = "summary, topic and emotions for texts or files"
    predict = subparsers.add_parser("predict", help=words, description=words[0].upper() + words[1:] + ", one JSON "
                                    "line each.")
    predict.add_argument("folder", type=Path, help=VERSION_FOLDER)
    predict.add_argument("--text", action="append", default=[], help="a text (repeatable)")
    predict.add_argument("--file", action="append", default=[], type=Path, help="a UTF-8 text file (repeatable)")
    predict.add_argument("--max-new-tokens", type=int, default=128, help="summary length limit (default: 128)")
    _common(predict)
    predict.set_defaults(func=cmd_predict)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def _setup_torch(args: argparse.Namespace) -> str:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but torch sees no CUDA GPU here; use --device cpu (or auto)")
    return args.device


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """["train.max_steps=200", "datasets=[\"bbc\"]"] -> {"train": {"max_steps": 200}, "datasets": ["bbc"]}."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --set takes KEY=VALUE, got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        target = params
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return params


# ------------------------------------------------------------------------------------------------ train
def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from leximind.cli import require_installation
    from model.training.run import RunSpecError, spec_from_params, train_version

    if args.register and not require_installation(settings):
        return 1  # said before training, not after it
    device = _setup_torch(args)
    params: dict[str, Any] = {"recipe": args.recipe, **parse_overrides(args.set)}
    if args.data:
        params["datasets"] = args.data
    if args.init:
        params["init"] = args.init
    try:
        spec = spec_from_params(params)
    except (RunSpecError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if spec.init == "active":
        print("error: this recipe starts from the active version; pass --init FOLDER (a version or a T5 "
              "checkpoint) or --init scratch", file=sys.stderr)
        return 2
    output = args.output or settings.models_dir / f"{args.recipe}-{_timestamp()}"
    bar = tqdm(total=spec.train.max_steps, unit="step", dynamic_ncols=True, disable=not sys.stderr.isatty())

    def progress(p: Any) -> None:
        bar.total = p.total_steps
        bar.update(p.step - bar.n)
        postfix = {"loss": f"{p.loss:.3f}", "lr": f"{p.learning_rate:.2e}"}
        if p.dev_loss is not None:
            postfix["dev"] = f"{p.dev_loss:.3f}"
        bar.set_postfix(postfix)
        if bar.disable:
            log.info("step %d/%d loss %.4f lr %.2e eta %.0fs%s", p.step, p.total_steps, p.loss, p.learning_rate,
                     p.eta_s, f" dev {p.dev_loss:.4f}" if p.dev_loss is not None else "")

    try:
        outcome = train_version(spec, output, shared_root=settings.shared_data, callback=progress,
                                checkpoint_dir=args.checkpoint_dir, device=device,
                                on_phase=lambda name: bar.set_description(name))
    except _missing_input_errors() as exc:  # a --data file or --init folder that is not there, an unknown corpus
        print(f"error: {_missing_input_words(exc)}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    print(json.dumps({"folder": str(outcome.folder), **_headline(outcome.metrics)}, indent=2))
    if args.register:
        _register(settings, outcome, activate=args.activate, recipe=args.recipe)
    return 0


def _register(settings: Settings, outcome: Any, *, activate: bool, recipe: str) -> None:
    from db.session import session_scope
    from db.versions import register_version
    from leximind.cli import prepare_services
    from model.artifacts import manifest_sha256

    services = prepare_services(settings)
    with session_scope(services.database_url) as session:
        version = register_version(
            session, path=str(outcome.folder), source="starter" if recipe == "starter" else "trained",
            metrics={"held_out_score": outcome.held_out}, manifest_sha256=manifest_sha256(outcome.folder),
            activate=activate,
        )
        print(f"registered {outcome.folder} as {version.name}{' (active)' if activate else ''}")


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    test, base = metrics.get("test", {}), metrics.get("baselines", {})
    out: dict[str, Any] = {"held_out_score": metrics.get("held_out_score"), "training": metrics.get("training")}
    if "topic" in test:
        out["topic"] = {k: test["topic"][k] for k in ("accuracy", "macro_f1", "n")}
        if "tfidf_lr_topic" in base:
            out["topic"]["baseline_tfidf_lr"] = {k: base["tfidf_lr_topic"][k] for k in ("accuracy", "macro_f1")}
    if "emotion" in test:
        out["emotion"] = dict(test["emotion"])
        if "tfidf_lr_emotion" in base:
            out["emotion"]["baseline_tfidf_lr"] = base["tfidf_lr_emotion"]
    if "summary" in test:
        out["summary"] = {k: v for k, v in test["summary"].items() if k != "examples"}
        if "lead3_summary" in base:
            out["summary"]["baseline_lead3"] = base["lead3_summary"]
    return out


def _timestamp() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


# --------------------------------------------------------------------------------------------- evaluate
def _load(args: argparse.Namespace) -> Any:
    """The verified artifact, or None after printing why it cannot be used."""
    from model.artifacts import ArtifactError, load_artifact

    device = _setup_torch(args)
    try:
        return load_artifact(args.folder, device=device)
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from model.training.evaluation import EvalSettings, evaluate, held_out_score
    from model.training.run import RunSpec, baselines, load_splits

    artifact = _load(args)
    if artifact is None:
        return 1
    saved = artifact.manifest.get("run_spec") or {}
    datasets = args.data or saved.get("datasets") or ["bbc", "goemotions"]
    spec = RunSpec(datasets=datasets, max_eval_examples=args.max_eval_examples,
                   split_fractions=tuple(saved.get("split_fractions", (0.8, 0.1, 0.1))))
    try:
        splits = load_splits(spec, settings.shared_data)
    except _missing_input_errors() as exc:
        print(f"error: {_missing_input_words(exc)}", file=sys.stderr)
        return 1
    eval_saved = saved.get("eval") or {}
    settings_eval = dataclasses.replace(
        EvalSettings(**eval_saved), max_summary_examples=args.max_summary_examples
    )
    metrics = evaluate(artifact.model, artifact.tokenizer, splits["dev"], splits["test"], settings_eval)
    metrics["held_out_score"] = held_out_score(metrics)
    if args.baselines:
        metrics["baselines"] = baselines(splits, artifact.model.config, args.max_summary_examples,
                                         ("summary", "topic", "emotion"))
    result = {"version": artifact.version, "datasets": datasets, **metrics}
    print(json.dumps(result, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------- predict
def _read_texts(args: argparse.Namespace) -> list[str]:
    """The --text values, then the --file contents; SystemExit naming the first that cannot be used."""
    texts = list(args.text)
    for path in args.file:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise SystemExit(f"error: {path} is not UTF-8 text; predict reads plain text (convert the file, "
                             "or upload PDFs and Word files to the app, which extracts their text)") from None
        except OSError as exc:
            raise SystemExit(f"error: cannot read {path}: {exc.strerror}") from None
    sources = [f"--text {n}" for n in range(1, len(args.text) + 1)] + [f"--file {p}" for p in args.file]
    for source, text in zip(sources, texts, strict=True):
        if not text.strip():
            raise SystemExit(f"error: {source} is empty; a document needs some text to be summarised or labelled")
    return texts


def cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    if not args.text and not args.file:
        print("error: give --text or --file", file=sys.stderr)
        return 2
    texts = _read_texts(args)
    from model.training.evaluation import EvalSettings, class_scores, summarize

    artifact = _load(args)
    if artifact is None:
        return 1
    config = artifact.model.config
    eval_settings = EvalSettings(max_input_length=config.max_input_length, max_new_tokens=args.max_new_tokens,
                                 input_prefix=(artifact.manifest.get("training_config") or {}).get("input_prefix", ""))
    topics, emotions = class_scores(artifact.model, artifact.tokenizer, texts, eval_settings,
                                    topic_temperature=artifact.labels["topic_temperature"])
    summaries = summarize(artifact.model, artifact.tokenizer, texts, eval_settings)
    thresholds = artifact.labels["emotion_thresholds"]
    for index, summary in enumerate(summaries):
        row: dict[str, Any] = {"model_version": artifact.version, "summary": summary}
        if topics is not None:
            scores = dict(zip(config.topic_labels, map(float, topics[index]), strict=True))
            best = max(scores, key=scores.get)
            row["topic"] = {"label": best, "score": round(scores[best], 4),
                            "scores": {k: round(v, 4) for k, v in scores.items()}}
        if emotions is not None:
            ranked = sorted(zip(config.emotion_labels, map(float, emotions[index]), strict=True),
                            key=lambda item: -item[1])
            row["emotions"] = [{"label": label, "score": round(score, 4), "threshold": thresholds[label],
                                "selected": score >= thresholds[label]} for label, score in ranked]
        print(json.dumps(row, ensure_ascii=False))
    return 0
