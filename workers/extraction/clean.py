"""One text shape for every format: NFC, '\\n' line ends, no control characters, tidy whitespace.

The result is safe to store as JSON and in a PostgreSQL text column (no NUL, no lone surrogates).
"""

from __future__ import annotations

import re
import unicodedata

_LINE_BREAKS = re.compile("\r\n|[\r\x0b\x0c\x85\u2028\u2029]")
# C0/C1 controls (tab and newline kept), BOMs, non-characters, lone surrogates, zero-width no-break.
_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u200b\ufeff\ufffe\uffff\ud800-\udfff]")
_SPACES = re.compile(r"[^\S\n]+")  # runs of horizontal whitespace (incl. tabs, NBSP, thin spaces)
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    text = _LINE_BREAKS.sub("\n", text)
    text = _INVISIBLE.sub("", text)
    text = unicodedata.normalize("NFC", text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


def truncate(text: str, max_chars: int) -> tuple[str, bool]:
    """Cut to at most max_chars, at a word boundary when one is near; return (text, was_cut)."""
    if len(text) <= max_chars:
        return text, False
    cut = text[:max_chars]
    boundary = max(cut.rfind(" ", max_chars - 200), cut.rfind("\n", max_chars - 200))
    if boundary > 0:
        cut = cut[:boundary]
    return cut.rstrip(), True
