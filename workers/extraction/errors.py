"""The one exception extraction raises, and the fixed set of reasons it can carry.

Every failure a person can see goes through :class:`ExtractionError`: a stable ``code`` that the job
system stores and counts, and a ``message`` in plain words that says what to do next.
"""

from __future__ import annotations

# code -> what it means (for docs, dashboards and the API); messages are built where the error is raised.
ERROR_CODES: dict[str, str] = {
    "empty_file": "the upload has no bytes",
    "too_large": "the upload is over ExtractionLimits.max_bytes",
    "unsupported_type": "not a format we read (images, spreadsheets, legacy .doc, archives, binary data)",
    "too_many_pages": "a PDF with more pages than ExtractionLimits.max_pages",
    "password_protected": "a PDF or Word file that needs a password to open",
    "no_text_layer": "a PDF whose pages are images only (a scan without OCR)",
    "corrupt_file": "the file claims a format but its structure is broken beyond repair",
    "timeout": "parsing ran past ExtractionLimits.timeout_s (wall clock or CPU time)",
    "out_of_memory": "parsing needed more than ExtractionLimits.max_memory_mb",
    "parser_crashed": "the parser process died (signal, native crash, protocol breakage)",
    "decompression_bomb": "a DOCX (zip) that expands past ExtractionLimits.max_uncompressed_bytes",
    "no_text": "the file parsed but holds no readable text",
}


class ExtractionError(Exception):
    """Extraction failed for a reason a person can act on."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown extraction error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ExtractionError({self.code!r}, {self.message!r})"

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KB'; for messages people read."""
    if n < 1024:
        return f"{n} bytes"
    size = n / 1024
    for unit in ("KB", "MB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
