"""What extraction takes (limits) and what it gives back (the extracted text and facts about it)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .errors import ExtractionError

Format = Literal["txt", "md", "html", "pdf", "docx"]
FORMATS: tuple[str, ...] = ("txt", "md", "html", "pdf", "docx")

MiB = 1024 * 1024


@dataclass(frozen=True)
class ExtractionLimits:
    max_bytes: int = 20 * MiB  # uploads above this are refused before any parsing
    max_pages: int = 500  # PDFs with more pages are refused (declared count checked first, then the real one)
    max_chars: int = 2_000_000  # longer text is cut here (truncated=True), not failed
    timeout_s: float = 60.0  # wall clock for one document; the sandbox also sets a CPU limit from it
    max_memory_mb: int = 1024  # address-space cap of the parser process (RLIMIT_AS)
    max_uncompressed_bytes: int = 200 * MiB  # a DOCX may unpack to at most this much in total
    max_compression_ratio: int = 200  # ... and no member may expand more than this (bomb guard)
    max_zip_members: int = 5000  # ... nor hold more entries than this

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtractionLimits:
        return cls(**data)


@dataclass
class Extracted:
    text: str  # cleaned, never empty
    title: str | None
    page_count: int | None  # PDFs only
    detected_format: Format
    encoding: str | None  # the codec text formats were decoded with (e.g. "utf-8", "cp1252")
    truncated: bool = False
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Extracted:
        return cls(**data)


class Deadline:
    """Cooperative time budget: readers call check() between pages or blocks.

    In the sandbox the child is also killed from outside at the same limit; this only makes the
    in-process path stop at a sensible point when the work is divisible.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self._end:
            raise ExtractionError("timeout", timeout_message(self.seconds))


def timeout_message(seconds: float) -> str:
    return (
        f"Reading this file took longer than the {seconds:g}-second limit. It may be damaged or unusually "
        "complex; try saving it again from the program that made it, or split it into smaller files."
    )
