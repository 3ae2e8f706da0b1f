"""Text cleaning before tokenisation, as scikit-learn transformers (``fit``/``transform``).

T5's vocabulary is cased and has no tokens for control characters, so cleaning is deliberately light:
Unicode normalisation, control characters removed, whitespace collapsed. Nothing is lower-cased by default.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from sklearn.base import BaseEstimator, TransformerMixin

_WHITESPACE = re.compile(r"\s+")


class BasicTextCleaner(BaseEstimator, TransformerMixin):
    def __init__(self, unicode_form: str = "NFKC", lowercase: bool = False, collapse_whitespace: bool = True):
        self.unicode_form = unicode_form
        self.lowercase = lowercase
        self.collapse_whitespace = collapse_whitespace

    def fit(self, texts: Iterable[str], y: object = None) -> BasicTextCleaner:
        return self  # stateless

    def clean(self, text: str) -> str:
        if not isinstance(text, str):
            raise TypeError(f"expected str, got {type(text).__name__}")
        if self.unicode_form:
            text = unicodedata.normalize(self.unicode_form, text)
        # control and format characters (category C*) go; tabs and newlines become spaces first
        text = "".join(
            " " if ch in "\t\n\r\f\v" else ch for ch in text if ch in "\t\n\r\f\v" or not _is_control(ch)
        )
        if self.collapse_whitespace:
            text = _WHITESPACE.sub(" ", text)
        if self.lowercase:
            text = text.lower()
        return text.strip()

    def transform(self, texts: Iterable[str]) -> list[str]:
        return [self.clean(text) for text in texts]


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch).startswith("C")


class TextPreprocessor(BaseEstimator, TransformerMixin):
    """Cleaner plus a character cap (cheap guard before tokenising huge documents)."""

    def __init__(self, cleaner: BasicTextCleaner | None = None, max_chars: int | None = None):
        self.cleaner = cleaner
        self.max_chars = max_chars

    def fit(self, texts: Iterable[str], y: object = None) -> TextPreprocessor:
        return self

    def transform(self, texts: Iterable[str]) -> list[str]:
        cleaner = self.cleaner if self.cleaner is not None else BasicTextCleaner()
        cleaned = cleaner.transform(texts)
        if self.max_chars is not None:
            cleaned = [text[: self.max_chars] for text in cleaned]
        return cleaned
