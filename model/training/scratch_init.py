"""Initialising a model trained from scratch (no pretrained checkpoint) from its training data.

- Token embeddings by latent semantic analysis (``lsa_embeddings``), optionally with a few dimensions of
  label evidence per token (``label_evidence``: naive-Bayes log-count ratios from the training labels,
  as in NBSVM, Wang & Manning 2012), so mean-pooled embeddings start out as useful features.
- Head biases at the label priors (``prior_biases``): the first hundred steps are not spent learning them.
- Heads fitted as linear probes (``linear_probe_heads``): logistic regression on the initial model's pooled
  encoder states, then fine-tuned with everything else ("LP-FT", Kumar et al. 2022), so even a run cut
  short by its time limit starts from a working classifier.
- Residual-branch outputs scaled down (``shrink_residual_outputs``), so the untrained blocks start close to
  the identity and the mean-pooled embeddings reach the heads undisturbed (the GPT-2 / "zero-init the
  last layer of each residual block" habit).

Latent semantic analysis over the training texts: a TF-IDF matrix of T5 token ids (documents x tokens),
reduced by truncated SVD; each token's row of V * S becomes its embedding, scaled to unit RMS like T5's own
initialisation. Tokens never seen in the training texts keep small random vectors. A tiny encoder starting
from these embeddings already carries topic and sentiment signal in its mean-pooled states, which is what
lets the starter recipe reach useful accuracy in minutes on a CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import sparse
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

log = logging.getLogger(__name__)


def lsa_embeddings(
    documents: Sequence[Sequence[int]],
    vocab_size: int,
    dim: int,
    *,
    seed: int = 0,
    unseen_std: float = 0.1,
    evidence: np.ndarray | None = None,
) -> torch.Tensor:
    """(vocab_size, dim) float32 embeddings from token-id documents (training split only).

    evidence: optional (vocab_size, k) per-token label features (``label_evidence``) placed in the first
    k dimensions; LSA fills the remaining dim - k."""
    generator = np.random.default_rng(seed)
    table = generator.normal(0.0, unseen_std, size=(vocab_size, dim)).astype(np.float32)
    if len(documents) < 4:
        log.warning("only %d training texts: too few for LSA, embeddings stay random", len(documents))
        return torch.from_numpy(table * (1.0 / unseen_std))
    k = 0 if evidence is None else evidence.shape[1]
    vectorizer = TfidfVectorizer(analyzer=lambda ids: ids, sublinear_tf=True, min_df=2)
    matrix = vectorizer.fit_transform(documents)  # (docs, seen tokens)
    components = min(dim - k, matrix.shape[1] - 1, matrix.shape[0] - 1)
    svd = TruncatedSVD(n_components=components, algorithm="randomized", n_iter=5, random_state=seed)
    svd.fit(matrix)
    vectors = (svd.components_ * svd.singular_values_[:, None]).T  # (seen tokens, components)
    vectors = vectors / vectors.std(0, keepdims=True).clip(min=1e-8)  # every dimension at unit scale
    seen = np.fromiter(vectorizer.vocabulary_.keys(), dtype=np.int64)
    columns = np.fromiter(vectorizer.vocabulary_.values(), dtype=np.int64)
    inside = seen < vocab_size
    rows = seen[inside]
    table[rows, k:] = 0.0
    table[rows, k:k + components] = vectors[columns[inside]]
    if evidence is not None:
        table[rows, :k] = evidence[rows]
    table[rows] /= np.sqrt((table[rows] ** 2).mean(1, keepdims=True)).clip(min=1e-8)  # unit RMS per token
    log.info("LSA embeddings: %d of %d tokens seen in %d documents, %d LSA dimensions (%.0f%% variance), "
             "%d label-evidence dimensions", int(inside.sum()), vocab_size, len(documents), components,
             100 * svd.explained_variance_ratio_.sum(), k)
    return torch.from_numpy(table)


def label_evidence(
    documents: Sequence[Sequence[int]], label_sets: Sequence[Sequence[int]], num_labels: int, vocab_size: int,
    *, alpha: float = 1.0, min_df: int = 5,
) -> np.ndarray:
    """(vocab_size, num_labels): per token, the smoothed log-ratio of its frequency in documents with a
    label to its frequency in documents without it (naive-Bayes evidence), scaled to unit std per label.

    documents and label_sets are parallel: the token ids of a training text and the label indices it has.
    Tokens in fewer than min_df documents get no evidence: a token seen in one training text would carry
    that text's own label, which the model would memorise instead of learning to generalise.
    """
    rows = np.repeat(np.arange(len(documents)), [len(ids) for ids in documents])
    columns = np.fromiter((t for ids in documents for t in ids), dtype=np.int64, count=len(rows))
    keep = columns < vocab_size
    presence = sparse.csr_matrix((np.ones(int(keep.sum())), (rows[keep], columns[keep])),
                                 shape=(len(documents), vocab_size))
    presence.data[:] = 1.0  # document frequency: long articles do not drown short comments
    label_rows = np.repeat(np.arange(len(label_sets)), [len(labels) for labels in label_sets])
    label_columns = np.fromiter((i for labels in label_sets for i in labels), dtype=np.int64, count=len(label_rows))
    has_label = sparse.csr_matrix((np.ones(len(label_rows)), (label_rows, label_columns)),
                                  shape=(len(documents), num_labels))
    has_label.data[:] = 1.0
    totals = np.asarray(presence.sum(0)).ravel()  # (vocab,)
    with_label = np.asarray((has_label.T @ presence).todense())  # (labels, vocab)
    without_label = totals[None, :] - with_label
    ratio = np.log((with_label + alpha) / (with_label.sum(1, keepdims=True) + alpha * vocab_size))
    ratio -= np.log((without_label + alpha) / (without_label.sum(1, keepdims=True) + alpha * vocab_size))
    seen = totals >= min_df
    ratio[:, ~seen] = 0.0
    if seen.sum() > 1:
        ratio /= ratio[:, seen].std(1, keepdims=True).clip(min=1e-8)
    return ratio.T.astype(np.float32)


@torch.no_grad()
def prior_biases(model: Any, topics: Sequence[str], emotion_sets: Sequence[Sequence[str]]) -> None:
    """Topic bias = log class frequency; emotion bias = logit of each label's frequency (smoothed)."""
    if model.topic_head is not None and topics:
        labels = model.config.topic_labels
        counts = np.array([sum(t == label for t in topics) for label in labels], dtype=np.float64) + 1.0
        model.topic_head.proj.bias.copy_(torch.from_numpy(np.log(counts / counts.sum())))
    if model.emotion_head is not None and emotion_sets:
        labels = model.config.emotion_labels
        counts = np.array([sum(label in chosen for chosen in emotion_sets) for label in labels], dtype=np.float64)
        frequency = (counts + 1.0) / (len(emotion_sets) + 2.0)
        model.emotion_head.proj.bias.copy_(torch.from_numpy(np.log(frequency / (1.0 - frequency))))


@torch.no_grad()
def shrink_residual_outputs(model: Any, factor: float) -> None:
    """Multiply the output projection of every attention and feed-forward branch by `factor`."""
    for name, param in model.named_parameters():
        if name.endswith((".o.weight", ".ff.wo.weight")) and name.startswith(("encoder.", "decoder.")):
            param.mul_(factor)


@torch.no_grad()
def pooled_features(head: Any, model: Any, inputs: Sequence[Sequence[int]], batch_rows: int = 64) -> np.ndarray:
    """(N, d_model) the head's pooled view of the encoder states of each input (token ids), in order."""
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
    features = np.zeros((len(inputs), model.config.d_model), dtype=np.float32)
    for start in range(0, len(order), batch_rows):
        rows = order[start:start + batch_rows]
        width = max(len(inputs[i]) for i in rows)
        ids = torch.full((len(rows), width), model.config.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, : len(inputs[i])] = torch.as_tensor(inputs[i])
            mask[r, : len(inputs[i])] = 1
        ids, mask = ids.to(device), mask.to(device)
        features[rows] = head.pool(model.encode(ids, mask), mask).float().cpu().numpy()
    return features


@torch.no_grad()
def linear_probe_heads(
    model: Any,
    topic_rows: tuple[Sequence[Sequence[int]], Sequence[int]] | None,
    emotion_rows: tuple[Sequence[Sequence[int]], np.ndarray] | None,
    *,
    max_rows: int = 10000,
    seed: int = 0,
) -> None:
    """Fit each head's projection by logistic regression on pooled features of training inputs.

    topic_rows: (inputs, label index per input); emotion_rows: (inputs, (N, L) 0/1 matrix). Rows beyond
    max_rows are sampled away (fixed seed). A label with no positive (or no negative) row keeps its bias."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)

    def sample(n: int) -> np.ndarray:
        return np.sort(rng.choice(n, size=max_rows, replace=False)) if n > max_rows else np.arange(n)

    if model.topic_head is not None and topic_rows and len(topic_rows[0]):
        inputs, labels = topic_rows
        keep = sample(len(inputs))
        y = np.asarray(labels)[keep]
        if len(set(y.tolist())) == len(model.config.topic_labels) >= 2:
            x = pooled_features(model.topic_head, model, [inputs[i] for i in keep])
            probe = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
            weight, bias = probe.coef_, probe.intercept_
            if weight.shape[0] == 1:  # two classes: scikit-learn keeps one row
                weight, bias = np.vstack([-weight / 2, weight / 2]), np.array([-bias[0] / 2, bias[0] / 2])
            model.topic_head.proj.weight.copy_(torch.from_numpy(weight).float())
            model.topic_head.proj.bias.copy_(torch.from_numpy(bias).float())
    if model.emotion_head is not None and emotion_rows and len(emotion_rows[0]):
        inputs, gold = emotion_rows
        keep = sample(len(inputs))
        x = pooled_features(model.emotion_head, model, [inputs[i] for i in keep])
        for column in range(gold.shape[1]):
            y = gold[keep, column]
            if y.min() == y.max():
                continue
            probe = LogisticRegression(C=1.0, max_iter=300).fit(x, y)  # lbfgs: dense features, fast
            model.emotion_head.proj.weight[column] = torch.from_numpy(probe.coef_[0]).float()
            model.emotion_head.proj.bias[column] = float(probe.intercept_[0])
