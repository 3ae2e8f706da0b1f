"""PDF: text of every page with pypdf, tolerant of damaged streams, strict about passwords and page counts."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError
from pypdf.generic import DictionaryObject

from .errors import ExtractionError
from .result import Deadline, Extracted, ExtractionLimits

log = logging.getLogger(__name__)

_FILE_NAME_TITLE = re.compile(r"\.(?:pdf|docx?|txt|rtf|odt|html?|indd|qxd|tex|ps)$", re.IGNORECASE)
_MEANINGLESS_TITLES = {"untitled", "untitled document", "document", "title", "none", "slide 1"}


def read_pdf(data: bytes, limits: ExtractionLimits, deadline: Deadline) -> Extracted:
    warnings: list[str] = []
    with _pypdf_problems() as problems:
        reader = PdfReader(io.BytesIO(data), strict=False)
        _unlock(reader)
        page_count = _check_page_count(reader, limits.max_pages)
        texts, failed, truncated_at = _page_texts(reader, limits.max_chars, deadline)
        title = _title(reader)
    if truncated_at is not None:
        warnings.append(f"Only pages 1-{truncated_at} were read: they already hold more text than the limit.")
    if failed:
        warnings.append(f"{len(failed)} page(s) could not be read and were skipped: {_page_list(failed)}.")
    if problems:
        warnings.append(
            f"The PDF has damaged or non-standard parts ({len(problems)} problem(s) reported while reading, "
            f"first: {problems[0][:200]}); some text may be missing."
        )
    read = len(texts)
    empty = [i + 1 for i, text in enumerate(texts) if not text.strip()]
    if len(empty) == read:
        _raise_no_text(reader, failed, page_count)
    if empty:
        warnings.append(
            f"{len(empty)} of {read} pages have no text layer (scanned images?) and contribute nothing: "
            f"{_page_list(empty)}."
        )
    return Extracted(
        text="\n\n".join(texts),
        title=title,
        page_count=page_count,
        detected_format="pdf",
        encoding=None,
        truncated=truncated_at is not None,
        warnings=warnings,
    )


def _unlock(reader: PdfReader) -> None:
    """Files encrypted with an empty user password (owner restrictions only) open; others need the password."""
    if not reader.is_encrypted:
        return
    try:
        opened = reader.decrypt("") != PasswordType.NOT_DECRYPTED
    except (DependencyError, NotImplementedError) as exc:
        raise ExtractionError(
            "password_protected",
            f"This PDF is encrypted with a method we cannot open ({exc}). Save an unencrypted copy "
            "(for example with 'Print to PDF') and upload it again.",
        ) from exc
    if not opened:
        raise ExtractionError(
            "password_protected",
            "This PDF is protected by a password. Remove the password (open it and save an unprotected copy, "
            "or use 'Print to PDF') and upload it again.",
        )


def _check_page_count(reader: PdfReader, max_pages: int) -> int:
    declared = _declared_page_count(reader)
    if declared is not None and declared > max_pages:  # refuse before walking a huge page tree
        raise _too_many_pages(declared, max_pages)
    count = len(reader.pages)
    if count > max_pages:
        raise _too_many_pages(count, max_pages)
    if count == 0:
        raise ExtractionError(
            "corrupt_file",
            "This PDF has no pages we can find; it may be damaged. Open it on your computer, save it again "
            "(or use 'Print to PDF') and upload the new copy.",
        )
    return count


def _declared_page_count(reader: PdfReader) -> int | None:
    try:
        pages = reader.trailer["/Root"]["/Pages"]
        count = pages.get("/Count") if isinstance(pages, DictionaryObject) else None
        return int(count) if count is not None else None
    except (KeyError, TypeError, ValueError, FileNotDecryptedError):
        return None  # the real count below decides


def _too_many_pages(count: int, max_pages: int) -> ExtractionError:
    return ExtractionError(
        "too_many_pages",
        f"This PDF has {count} pages; the limit is {max_pages}. Split it into parts of at most "
        f"{max_pages} pages and upload those.",
    )


def _page_texts(
    reader: PdfReader, max_chars: int, deadline: Deadline
) -> tuple[list[str], list[int], int | None]:
    """Text per page (a page that fails is '' and listed), stopping once max_chars is reached."""
    texts: list[str] = []
    failed: list[int] = []
    total = 0
    for number, page in enumerate(reader.pages, start=1):
        deadline.check()
        try:
            text = page.extract_text() or ""
        except MemoryError:
            raise
        except Exception as exc:  # one damaged page must not cost the others
            log.info("pdf page %d unreadable: %r", number, exc)
            failed.append(number)
            text = ""
        texts.append(text)
        total += len(text)
        if total > max_chars and number < len(reader.pages):
            return texts, failed, number
    return texts, failed, None


def _raise_no_text(reader: PdfReader, failed: list[int], page_count: int) -> None:
    if len(failed) == page_count:
        raise ExtractionError(
            "corrupt_file",
            "None of the pages of this PDF could be read; it is damaged. Open it on your computer, save it "
            "again (or use 'Print to PDF') and upload the new copy.",
        )
    if any(_has_images(page) for page in reader.pages):
        raise ExtractionError(
            "no_text_layer",
            "This PDF contains only scanned images of pages, with no text layer. Run it through OCR "
            "(for example OCRmyPDF, or 'Recognize text' in Acrobat) and upload the result.",
        )
    raise ExtractionError(
        "no_text",
        "This PDF has no text on any page. If it should have, export it again from the program that made it.",
    )


def _has_images(page: object) -> bool:
    try:
        xobjects = page["/Resources"]["/XObject"]  # type: ignore[index]
        return any(xobjects[name].get("/Subtype") in ("/Image", "/Form") for name in xobjects)
    except Exception:  # no resources, or broken ones: not evidence of a scan
        return False


def _title(reader: PdfReader) -> str | None:
    try:
        raw = reader.metadata.title if reader.metadata else None
    except Exception:  # a broken Info dictionary costs only the title
        return None
    if not isinstance(raw, str):
        return None
    title = " ".join(raw.replace("\x00", "").split()).removeprefix("Microsoft Word - ")
    if not title or title.lower() in _MEANINGLESS_TITLES or _FILE_NAME_TITLE.search(title):
        return None
    return title


def _page_list(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:20])
    return shown + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")


@contextmanager
def _pypdf_problems() -> Iterator[list[str]]:
    """Collect what pypdf logs about the file (it repairs silently otherwise) to report as a warning."""
    problems: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if len(problems) < 1000:
                problems.append(record.getMessage())

    handler = _Collect(level=logging.WARNING)
    logger = logging.getLogger("pypdf")
    level = logger.level
    if logger.getEffectiveLevel() > logging.WARNING:  # e.g. the child logs errors only: still collect these
        logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield problems
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
