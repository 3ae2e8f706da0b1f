"""extract_in_process: bytes -> Extracted in the calling process, with no sandbox around the parsers.

Used by the parser child (sandbox.py) for every format, and directly by the sandbox's fast path for small
plain-text and Markdown files. Whatever goes wrong surfaces as ExtractionError, never as another exception.
"""

from __future__ import annotations

import logging

from .clean import clean_text, truncate
from .detect import claimed_format, detect_format
from .errors import ExtractionError, human_bytes
from .result import Deadline, Extracted, ExtractionLimits, Format

log = logging.getLogger(__name__)

_FORMAT_NAMES: dict[str, str] = {
    "txt": "text file",
    "md": "Markdown file",
    "html": "HTML page",
    "pdf": "PDF",
    "docx": "Word document",
}
_MAX_TITLE_CHARS = 300
_RAW_CHARS_PER_KEPT_CHAR = 4


def extract_in_process(
    data: bytes, filename: str, content_type: str | None = None, limits: ExtractionLimits | None = None
) -> Extracted:
    limits = limits or ExtractionLimits()
    check_size(data, limits)
    fmt = detect_format(data, filename, content_type)
    try:
        raw = _read(fmt, data, content_type, limits)
    except ExtractionError:
        raise
    except MemoryError as exc:
        raise out_of_memory(limits) from exc
    except RecursionError as exc:
        raise ExtractionError(
            "corrupt_file",
            f"This {_FORMAT_NAMES[fmt]} is nested too deeply to read; it is probably damaged or machine-made. "
            "Save it again from the program that made it and upload the new copy.",
        ) from exc
    except Exception as exc:  # parsers raise dozens of types on damaged input; all mean the same to a person
        log.info("%s parser failed on %r", fmt, filename, exc_info=True)
        raise ExtractionError(
            "corrupt_file",
            f"This {_FORMAT_NAMES[fmt]} is damaged and could not be read ({type(exc).__name__}: "
            f"{str(exc)[:200]}). Open it on your computer, save it again and upload the new copy.",
        ) from exc
    claimed = claimed_format(filename, content_type)
    if claimed in ("pdf", "docx") and fmt in ("txt", "md", "html"):
        raw.warnings.append(
            f"The file is named as a {_FORMAT_NAMES[claimed]} but holds text; it was read as text."
        )
    return finish(raw, limits)


def check_size(data: bytes, limits: ExtractionLimits) -> None:
    if not data:
        raise ExtractionError(
            "empty_file",
            "The file is empty (0 bytes). Check that you picked the right file and upload it again.",
        )
    if len(data) > limits.max_bytes:
        raise ExtractionError(
            "too_large",
            f"The file is {human_bytes(len(data))}; the limit is {human_bytes(limits.max_bytes)}. "
            "Split it into smaller files, or remove images and upload it again.",
        )


def finish(raw: Extracted, limits: ExtractionLimits) -> Extracted:
    """Clean, refuse empty text, cut to max_chars; the shape every reader's output ends in."""
    # Cleaning only shrinks text (whitespace, controls); reading more than a few times the limit would
    # only help a document that is mostly whitespace, and costs seconds on a 20 MB upload.
    raw_cap = _RAW_CHARS_PER_KEPT_CHAR * limits.max_chars
    text = clean_text(raw.text[:raw_cap])
    if not text and raw.detected_format in ("txt", "md"):
        # the file is text already: converting it would not help, it has nothing in it
        raise ExtractionError(
            "no_text",
            f"This {_FORMAT_NAMES[raw.detected_format]} has no text in it: it holds only blank space (spaces, "
            "line breaks or invisible characters). Put the text in the file and upload it again.",
        )
    if not text:
        raise ExtractionError(
            "no_text",
            f"We found no readable text in this {_FORMAT_NAMES[raw.detected_format]}. If it does contain text, "
            "save it as a PDF with text, a .docx or a .txt file and upload that.",
        )
    full_length = len(text)
    text, cut = truncate(text, limits.max_chars)
    cut = cut or len(raw.text) > raw_cap
    warnings = [clean_text(w) for w in raw.warnings]
    if cut:
        warnings.append(
            f"The text was cut to its first {len(text):,} characters (the limit is {limits.max_chars:,}; "
            f"the document has at least {full_length:,})."
        )
    title = clean_text(raw.title or "")[:_MAX_TITLE_CHARS] or None
    return Extracted(
        text=text,
        title=title,
        page_count=raw.page_count,
        detected_format=raw.detected_format,
        encoding=raw.encoding,
        truncated=cut or raw.truncated,
        warnings=warnings,
    )


def out_of_memory(limits: ExtractionLimits) -> ExtractionError:
    return ExtractionError(
        "out_of_memory",
        f"Reading this file needed more than the {limits.max_memory_mb} MB of memory allowed. It may be damaged "
        "or unusually complex; try a smaller or simpler version of it.",
    )


def _read(fmt: Format, data: bytes, content_type: str | None, limits: ExtractionLimits) -> Extracted:
    deadline = Deadline(limits.timeout_s)
    charset = _charset_param(content_type)
    # Parsers are imported on first use: the fast path for text must not pay for pypdf or python-docx.
    if fmt in ("txt", "md"):
        from .plaintext import read_plain

        return read_plain(data, fmt, charset)
    if fmt == "html":
        from .htmltext import read_html

        return read_html(data, charset)
    if fmt == "pdf":
        from .pdftext import read_pdf

        return read_pdf(data, limits, deadline)
    from .docxtext import read_docx

    return read_docx(data, limits, deadline)


def _charset_param(content_type: str | None) -> str | None:
    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip()
    return None
