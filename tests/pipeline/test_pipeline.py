"""The pipeline end to end on a tiny random artifact: order, batching invariance, chunking bounds, labels."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bench.hf_reference import hf_generate
from model import load_pretrained
from model.artifacts import load_artifact
from model.pipeline import Pipeline, PipelineConfig
from tests.model.conftest import EOS, VOCAB, write_t5_checkpoint

SHORT = dict(max_summary_tokens=10)


@pytest.fixture(scope="module")
def artifact(artifact_dir):
    return load_artifact(artifact_dir)


def make(artifact, **config) -> Pipeline:
    return Pipeline(artifact, device="cpu", config=PipelineConfig(**{**SHORT, "zero_shot": False, **config}))


def test_results_in_input_order_and_independent_of_batching(artifact, documents):
    one_by_one = [make(artifact).run([text])[0] for text in documents]
    for config in (
        dict(max_batch_rows=2),
        dict(max_batch_rows=8, max_batch_tokens=100_000),
        dict(max_batch_rows=8, max_batch_tokens=100_000, decode_threads=2),
        dict(max_batch_tokens=64),
    ):
        batched = make(artifact, **config).run(documents)
        assert [p.summary for p in batched] == [p.summary for p in one_by_one], config
    assert all(p.model_version == "tiny-v1" for p in one_by_one)


def test_summary_is_the_model_output_for_the_prefixed_text(artifact, documents):
    pipeline = make(artifact)
    prediction = pipeline.run(documents[:1])[0]
    batch = artifact.tokenizer.batch_encode(["summarize: " + documents[0]])
    expected = artifact.model.generate(batch.input_ids, batch.attention_mask, max_new_tokens=10)
    assert prediction.summary == artifact.tokenizer.decode(expected[0])


def test_generate_ids_is_invariant_to_the_token_budget(artifact):
    g = torch.Generator().manual_seed(0)
    segments = [
        torch.randint(5, 32000, (int(n),), generator=g).tolist() + [1] for n in [3, 90, 17, 400, 1, 64, 64]
    ]
    outputs = [
        make(artifact, **budget).generate_ids(segments)
        for budget in (
            dict(max_batch_rows=1),
            dict(max_batch_rows=3),
            dict(max_batch_tokens=512),
            dict(max_batch_rows=64, max_batch_tokens=10**6),
            dict(max_batch_rows=64, max_batch_tokens=10**6, encoder_batch_tokens=500),
        )
    ]
    assert all(out == outputs[0] for out in outputs[1:])


def test_long_documents_are_chunked_within_bounds(artifact, documents, monkeypatch):
    pipeline = make(artifact, max_input_tokens=48, max_chunks=3, max_rounds=2)
    encoded_rows = []
    original = pipeline.model.encode
    monkeypatch.setattr(
        pipeline.model, "encode", lambda ids, mask: encoded_rows.append(ids.shape) or original(ids, mask)
    )
    long_text = " ".join(documents) * 3  # far more than 3 chunks of 48 tokens
    predictions = pipeline.run([long_text, documents[0]])
    long, short = predictions
    assert long.chunks == 3 and long.truncated and long.summary
    assert short.chunks == 1 and not short.truncated
    assert all(shape[1] <= 48 for shape in encoded_rows)
    # round 1: 3 chunks + 1 short document; round 2 (last): one segment of the joined chunk summaries
    assert sum(shape[0] for shape in encoded_rows) == 3 + 1 + 1


def test_the_versions_topic_temperature_divides_the_logits(artifact, documents):
    """labels.json's topic_temperature (fitted on dev by training) is what the served scores use:
    softmax(z / 2) is softmax(z) square-rooted and renormalised, with the same argmax."""
    plain_labels = artifact.labels
    try:
        artifact.labels = {**plain_labels, "heads_trained": True}
        raw = make(artifact).run(documents[:2])
        artifact.labels = {**plain_labels, "heads_trained": True, "topic_temperature": 2.0}
        softened = make(artifact).run(documents[:2])
    finally:
        artifact.labels = plain_labels
    for before, after in zip(raw, softened, strict=True):
        roots = {label: math.sqrt(p) for label, p in before.topic.scores.items()}
        total = sum(roots.values())
        assert after.topic.scores == pytest.approx({k: v / total for k, v in roots.items()}, abs=1e-5)
        assert after.topic.label == before.topic.label and after.topic.score < before.topic.score


def test_trained_heads_read_the_same_encoder_pass(artifact, documents):
    artifact.labels = {**artifact.labels, "heads_trained": True}
    try:
        predictions = make(artifact).run(documents[:3])
        one_row_passes = make(artifact, encoder_batch_tokens=1).run(documents[:3])  # encoder sub-batches of 1
    finally:
        artifact.labels = {**artifact.labels, "heads_trained": False}
    for alone, batched in zip(one_row_passes, predictions, strict=True):
        assert alone.topic.scores == pytest.approx(batched.topic.scores, abs=1e-5)
    tok = artifact.tokenizer
    for text, prediction in zip(documents[:3], predictions, strict=True):
        batch = tok.batch_encode(["summarize: " + text])
        with torch.no_grad():
            out = artifact.model.classify(
                artifact.model.encode(batch.input_ids, batch.attention_mask), batch.attention_mask
            )
        topics = out.topic_probabilities()[0]
        assert prediction.topic.label == artifact.labels["topic"][int(topics.argmax())]
        assert prediction.topic.scores == pytest.approx(
            dict(zip(artifact.labels["topic"], topics.tolist(), strict=True)), abs=1e-5
        )
        emotions = {e.label: e for e in prediction.emotions}
        for label, p in zip(artifact.labels["emotion"], out.emotion_probabilities()[0].tolist(), strict=True):
            assert emotions[label].score == pytest.approx(p, abs=1e-5)
            assert emotions[label].selected == (emotions[label].score >= emotions[label].threshold)
        assert [e.score for e in prediction.emotions] == sorted(
            (e.score for e in prediction.emotions), reverse=True
        )
        assert not prediction.zero_shot


def test_untrained_heads_fall_back_to_zero_shot(artifact, documents):
    pipeline = Pipeline(artifact, device="cpu", config=PipelineConfig(**SHORT))
    prediction = pipeline.run(documents[:1])[0]
    assert prediction.zero_shot
    assert sum(prediction.topic.scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert len(prediction.emotions) == len(artifact.labels["emotion"])
    assert {"tokenize_s", "encode_s", "summarize_s", "zero_shot_s", "total_s"} <= set(prediction.timings)
    json.dumps(prediction.to_dict())  # JSON-ready


def test_zero_shot_reads_a_long_text_once_and_labels_it_as_its_whole_text_would(artifact):
    """A zero-shot prompt holds only the start of a text; the prompts are built from that start, so the
    labels are those of the whole text, without tokenizing it once per label."""
    from model.zero_shot import zero_shot_emotions, zero_shot_topics

    words = "The council met on Monday to argue about the budget, and nobody was happy about it. "
    text = "Opening remarks.\n\n" + words * 1500  # about 130,000 characters, a few thousand tokens
    pipeline = Pipeline(artifact, device="cpu", config=PipelineConfig(**SHORT))
    seen: list[int] = []
    tokenize = pipeline.tokenizer.tokenize

    def counting(texts):
        seen.extend(len(t) for t in texts)
        return tokenize(texts)

    pipeline.tokenizer.tokenize = counting
    prediction = pipeline.run([text])[0]
    pipeline.tokenizer.tokenize = tokenize
    assert prediction.zero_shot
    labels = artifact.labels
    cleaned = pipeline.preprocessor.transform([text])
    topics = zero_shot_topics(pipeline.model, pipeline.tokenizer, cleaned, labels["topic"])[0].scores
    emotions = zero_shot_emotions(pipeline.model, pipeline.tokenizer, cleaned, labels["emotion"])[0].scores
    assert prediction.topic.scores == pytest.approx(topics, abs=1e-6)
    assert {e.label: e.score for e in prediction.emotions} == pytest.approx(emotions, abs=1e-6)
    prompts = 1 + len(labels["emotion"])  # one topic prompt, one question per emotion
    assert sum(seen) < 4 * len(text) < prompts * len(text)  # the whole text once (chunks), then its start


def test_empty_text_raises(artifact):
    from model import TokenizerError

    with pytest.raises(TokenizerError):
        make(artifact).run(["fine", "  \n "])


@pytest.mark.parametrize("shape", ["gated-untied", "relu-tied"])
def test_greedy_parity_with_transformers(tmp_path, shape):
    """Same weights in transformers and in our pipeline: identical greedy tokens in fp32, real EOS stops."""
    if shape == "gated-untied":
        checkpoint = write_t5_checkpoint(tmp_path, "gated-gelu", untied=True, seed=2, eos_boost=1.0)
    else:
        checkpoint = write_t5_checkpoint(tmp_path, "relu", untied=False, seed=3, eos_boost=2.0)
    ours = load_pretrained(checkpoint.folder)
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 60, (11,), generator=g).tolist()
    segments = [torch.randint(2, VOCAB, (n,), generator=g).tolist() + [EOS] for n in lengths]
    config = PipelineConfig(max_summary_tokens=24, max_batch_rows=4)
    got = Pipeline.for_model(ours, device="cpu", config=config).generate_ids(segments)
    stops = []
    for segment, summary in zip(segments, got, strict=True):
        ids = torch.tensor([segment])
        expected = hf_generate(checkpoint.reference, ids, torch.ones_like(ids), 24, 0)[0].tolist()
        assert summary == expected[: len(summary)] and set(expected[len(summary) :]) <= {0}
        stops.append(len(summary) if summary[-1] == EOS else 0)
    assert len(set(stops)) > 2, f"outputs should stop at different steps: {stops}"


def test_beam_search_goes_through_the_reference_loop(artifact, documents):
    pipeline = make(artifact, num_beams=3)
    assert pipeline.decoder is None
    prediction = pipeline.run(documents[:1])[0]
    batch = artifact.tokenizer.batch_encode(["summarize: " + documents[0]])
    expected = artifact.model.generate(batch.input_ids, batch.attention_mask, max_new_tokens=10, num_beams=3)
    assert prediction.summary == artifact.tokenizer.decode(expected[0])


def test_an_ngram_ban_stays_on_the_fast_decoder(artifact, documents):
    short = [documents[0], documents[2], documents[4]]  # one chunk each: the summary is one generate()
    pipeline = make(artifact, no_repeat_ngram_size=2, max_summary_tokens=48)
    assert pipeline.decoder is not None
    predictions = pipeline.run(short)
    plain = make(artifact, max_summary_tokens=48).run(short)
    assert [p.summary for p in predictions] != [p.summary for p in plain]  # the ban changed something
    for document, prediction in zip(short, predictions, strict=True):
        batch = artifact.tokenizer.batch_encode(["summarize: " + document])
        expected = artifact.model.generate(
            batch.input_ids, batch.attention_mask, max_new_tokens=48, no_repeat_ngram_size=2
        )
        assert prediction.summary == artifact.tokenizer.decode(expected[0])


@pytest.mark.slow
def test_t5_small_shape_tokens_identical_to_transformers(tmp_path):
    """At a real model size (T5-small shape, varied outputs) fp32 tokens match transformers bit for bit;
    a different attention kernel than the reference's already flips tokens here after ~25 steps."""
    from bench.hf_reference import build_reference, save_checkpoint
    from bench.pipeline_sides import pad, random_documents

    reference = build_reference("small", seed=0)
    ours = load_pretrained(save_checkpoint(reference, tmp_path / "small"))
    docs = random_documents(4, [256] * 4, ours.config.vocab_size, seed=4)  # (seed 4: matmul flips rows 3, 4)
    config = PipelineConfig(max_summary_tokens=32, min_summary_tokens=32, max_batch_rows=4)
    pipeline = Pipeline.for_model(ours, device="cpu", config=config)
    got = pipeline.generate_ids(docs)
    ids, mask = pad(docs, torch.device("cpu"))
    expected = hf_generate(reference, ids, mask, 32, 32)
    assert got == expected.tolist()
    screen = pipeline.decoder.weights.screen  # the LM head's argmax came from the bf16 screen
    assert screen.screened_rows == 4 * 32 and not screen.disabled
    assert min(len(set(row)) for row in got) > 16  # not a degenerate model
