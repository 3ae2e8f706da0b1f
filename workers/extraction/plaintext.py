"""Plain text and Markdown: decode, and for Markdown drop the markup that is not prose.

This runs in the worker process (see sandbox.py), so every pattern here must stay linear in the input:
no unbounded lazy or nested quantifiers, and bounded spans where a pattern can restart on every character.
"""

from __future__ import annotations

import re

from .decode import decode_text
from .result import Extracted, Format

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*([^\n]+)", re.MULTILINE)
_ATX_H1 = re.compile(r"^[ ]{0,3}#[ \t]+([^\n]+)", re.MULTILINE)
_SETEXT_H1 = re.compile(r"^([^\n]+)\n=+[ \t]*$", re.MULTILINE)

# (pattern, replacement), applied in order. Spans exclude the bracket that would start the next attempt, so
# "![![![..." or "[a](x[a](x..." costs one step per character instead of one bounded scan per character.
_MARKDOWN_TO_PROSE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^[ ]{0,3}(?:```|~~~)[^\n]*", re.MULTILINE), ""),  # code fences (the code stays)
    (re.compile(r"^[ ]{0,3}\[[^\[\]\n]{1,500}\]:[ \t]*\S[^\n]*", re.MULTILINE), ""),  # link definitions
    (
        re.compile(r"!?\[([^\[\]\n]{0,500})\]\([^()\[\]\s]{0,2000}(?:\s+\"[^\"\n]{0,200}\")?\)"),
        r"\1",
    ),  # links, images
    (re.compile(r"\[([^\[\]\n]{1,500})\]\[[^\[\]\n]{0,500}\]"), r"\1"),  # reference links -> link text
    (re.compile(r"<(https?://[^<>\s]{1,2000})>"), r"\1"),  # autolinks
    (re.compile(r"</?[A-Za-z][A-Za-z0-9-]{0,30}(?:\s[^<>\n]{0,1000})?/?>"), ""),  # inline HTML tags
    (re.compile(r"^[ ]{0,3}#{1,6}[ \t]+", re.MULTILINE), ""),  # ATX heading markers
    (re.compile(r"^[ ]{0,3}(?:=+|-{3,}|\*{3,}|_{3,})[ \t]*$", re.MULTILINE), ""),  # setext underlines, rules
    (re.compile(r"^[ ]{0,3}>[ ]?", re.MULTILINE), ""),  # block quotes
    (re.compile(r"\*\*|__|`"), ""),  # strong emphasis and code spans
)


def read_plain(data: bytes, fmt: Format, declared_charset: str | None) -> Extracted:
    text, codec = decode_text(data, declared_charset)
    if fmt == "md":
        title = _markdown_title(text)
        text = _without_html_comments(_FRONT_MATTER.sub("", text, count=1))
        for pattern, replacement in _MARKDOWN_TO_PROSE:
            text = pattern.sub(replacement, text)
    else:
        title = _headline(text)
    return Extracted(text=text, title=title, page_count=None, detected_format=fmt, encoding=codec)


def _markdown_title(text: str) -> str | None:
    front = _FRONT_MATTER.match(text)
    if front and (found := _FRONT_MATTER_TITLE.search(front.group(1))):
        return found.group(1).strip().strip("\"'") or None
    head = text[:20_000]
    found = _ATX_H1.search(head) or _SETEXT_H1.search(head)
    if not found:
        return None
    return found.group(1).strip().rstrip("#").strip() or None


def _headline(text: str) -> str | None:
    """A short first line followed by a blank line reads as the title (news articles, memos, books)."""
    lines = text.lstrip()[:1000].splitlines()
    if len(lines) >= 3 and 0 < len(lines[0].strip()) <= 120 and not lines[1].strip():
        return lines[0].strip()
    return None


def _without_html_comments(text: str) -> str:
    # str.find instead of a regex: an unclosed "<!--" repeated many times would make r"<!--.*?-->" quadratic.
    parts, pos = [], 0
    while (start := text.find("<!--", pos)) != -1:
        end = text.find("-->", start + 4)
        if end == -1:
            break
        parts.append(text[pos:start])
        pos = end + 3
    parts.append(text[pos:])
    return "".join(parts)
