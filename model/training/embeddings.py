"""Data-derived token embeddings for models trained from scratch (no pretrained checkpoint).

Latent semantic analysis over the training texts: a TF-IDF matrix of T5 token ids (documents x tokens),
reduced by truncated SVD; each token's row of V * S becomes its embedding, scaled to unit RMS like T5's own
initialisation. Tokens never seen in the training texts keep small random vectors. A tiny encoder starting
from these embeddings already carries topic and sentiment signal in its mean-pooled states, which is what
lets the starter recipe reach useful accuracy in minutes on a CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

log = logging.getLogger(__name__)


def lsa_embeddings(
    documents: Sequence[Sequence[int]], vocab_size: int, dim: int, *, seed: int = 0, unseen_std: float = 0.1
) -> torch.Tensor:
    """(vocab_size, dim) float32 embeddings from token-id documents (training split only)."""
    generator = np.random.default_rng(seed)
    table = generator.normal(0.0, unseen_std, size=(vocab_size, dim)).astype(np.float32)
    if len(documents) < 4:
        log.warning("only %d training texts: too few for LSA, embeddings stay random", len(documents))
        return torch.from_numpy(table * (1.0 / unseen_std))
    vectorizer = TfidfVectorizer(analyzer=lambda ids: ids, sublinear_tf=True, min_df=2)
    matrix = vectorizer.fit_transform(documents)  # (docs, seen tokens)
    components = min(dim, matrix.shape[1] - 1, matrix.shape[0] - 1)
    svd = TruncatedSVD(n_components=components, algorithm="randomized", n_iter=5, random_state=seed)
    svd.fit(matrix)
    vectors = (svd.components_ * svd.singular_values_[:, None]).T  # (seen tokens, components)
    vectors = vectors / np.sqrt((vectors**2).mean(1, keepdims=True)).clip(min=1e-8)  # unit RMS per token
    seen = np.fromiter(vectorizer.vocabulary_.keys(), dtype=np.int64)
    columns = np.fromiter(vectorizer.vocabulary_.values(), dtype=np.int64)
    inside = seen < vocab_size
    table[seen[inside], :components] = vectors[columns[inside]]
    if components < dim:
        table[seen[inside], components:] = 0.0
    log.info("LSA embeddings: %d of %d tokens seen in %d documents, %d dimensions (%.0f%% variance)",
             int(inside.sum()), vocab_size, len(documents), components, 100 * svd.explained_variance_ratio_.sum())
    return torch.from_numpy(table)
