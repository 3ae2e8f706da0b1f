"""Bytes of a text format -> str, with the codec that was used.

Order of trust: a byte-order mark; valid UTF-8; a declared charset (HTML meta or the upload's content type);
then a guess. The guess prefers Windows-1252 when the bytes read as plausible Western European text (as
browsers do for unlabelled pages; charset-normalizer alone often calls short French or English text
cp1250 or cp932), and otherwise takes charset-normalizer's best match.
"""

from __future__ import annotations

import codecs

import charset_normalizer

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: same first two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# WHATWG: these labels mean windows-1252 on the web, and real files labelled so usually are.
_WEB_ALIASES = {"iso8859-1": "cp1252", "latin-1": "cp1252", "ascii": "cp1252", "iso8859-15": "cp1252"}

# Read as cp1252, these sit next to letters only when the bytes were really cp1250 (Polish "ą" -> "¹",
# "ł" -> "³", "ż" -> "¿", "Ą" -> "¥") or similar; in Western text they stand beside digits or spaces.
_SUSPECT_NEXT_TO_LETTER = frozenset("¹²³¿¥¦¤¬±¶¼½¾ªº")


def decode_text(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Return (text, codec name). Never raises on content: undecodable bytes become U+FFFD."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            if codec.startswith("utf-32"):  # FF FE 00 00 may also be UTF-16 LE text starting with U+0000
                try:
                    return data[len(bom) :].decode(codec), codec
                except UnicodeDecodeError:
                    continue
            return data[len(bom) :].decode(codec, errors="replace"), codec
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        # A file cut mid-character is still UTF-8.
        if exc.start >= len(data) - 3 and exc.reason == "unexpected end of data":
            return data.decode("utf-8", errors="replace"), "utf-8"
    codec = _known_codec(declared)
    if codec and codec != "utf-8":
        return data.decode(codec, errors="replace"), codec
    codec = guess_legacy_codec(data)
    return data.decode(codec, errors="replace"), codec


def guess_legacy_codec(data: bytes) -> str:
    western = _western_codec(data)
    if western:
        return western
    best = charset_normalizer.from_bytes(
        data[:200_000], cp_exclusion=["cp1252", "latin_1", "iso8859_15"]
    ).best()
    return _known_codec(best.encoding if best else None) or "cp1252"


def _known_codec(label: str | None) -> str | None:
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except (LookupError, ValueError):
        return None
    return _WEB_ALIASES.get(name, name)


def _western_codec(data: bytes) -> str | None:
    """cp1252 for Western European text (mostly ASCII letters, accents inside words); cp1250 when the
    letters look Latin but cp1250-only letters land on symbols; None for everything else."""
    try:
        text = data[:100_000].decode("cp1252")
    except UnicodeDecodeError:  # bytes 0x81 0x8D 0x8F 0x90 0x9D are unassigned in cp1252
        return None
    letters = sum(1 for ch in text if ch.isalpha())
    if letters == 0:
        return "cp1252"
    non_ascii_letters = sum(1 for ch in text if ch > "\x7f" and ch.isalpha())
    suspects = sum(
        1
        for i, ch in enumerate(text)
        if ch in _SUSPECT_NEXT_TO_LETTER and (text[i - 1 : i].isalpha() or text[i + 1 : i + 2].isalpha())
    )
    # Cyrillic, Greek, CJK, Hebrew... read as cp1252 turn nearly every letter into an accented one.
    if non_ascii_letters > 0.25 * letters:
        return None
    return "cp1252" if suspects <= max(1, letters // 2000) else "cp1250"
