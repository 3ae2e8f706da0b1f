"""A tiny random model that writes one-word summaries, so fault and load runs spend their time on the job system.

``create_random_artifact`` gives random weights that never emit EOS: every summary runs to the 128-token limit,
about 0.3 s of CPU per document, which would make a 1,000-document fault run a model benchmark. This one is
the same tiny architecture with two changes to the weights, then saved as an ordinary checksummed version:

- channel 0 of every token embedding is +50 (the decoder start token's is -50), so after the final RMSNorm
  that channel's sign says whether a real token has been written yet;
- the LM head reads channel 0 only for EOS (+10) and pad (+5): at the first step both lose to an ordinary
  token, from the second step on EOS wins. Every summary is one word.

The heads are marked trained (labels.json), so topics and emotions come from the heads, not zero-shot prompts.
"""
from __future__ import annotations

import shutil
from pathlib import Path

TOPICS = ("business", "sport", "tech")
EMOTIONS = ("joy", "sadness", "neutral")


def create_quick_artifact(folder: str | Path, seed: int = 0) -> Path:
    import torch

    from model.artifacts import create_random_artifact, load_artifact, save_artifact

    folder = Path(folder)
    if folder.exists():
        return folder
    base = folder.parent / f".{folder.name}-random"
    shutil.rmtree(base, ignore_errors=True)
    create_random_artifact(base, size="tiny", topic_labels=TOPICS, emotion_labels=EMOTIONS, seed=seed)
    try:
        artifact = load_artifact(base)
        model = artifact.model
        eos, pad = model.config.eos_token_id, model.config.pad_token_id
        with torch.no_grad():
            model.token_embedding.weight[:, 0] = 50.0
            model.token_embedding.weight[pad, 0] = -50.0
            model.lm_head.weight[:, 0] = 0.0
            model.lm_head.weight[eos, 0] = 10.0
            model.lm_head.weight[pad, 0] = 5.0
        labels = {**artifact.labels, "heads_trained": True}
        return save_artifact(folder, model, artifact.tokenizer, labels, {},
                             extra_manifest={"source": "random", "size": "tiny", "seed": seed, "summary": "one word"})
    finally:
        shutil.rmtree(base, ignore_errors=True)
