"""DOCX: paragraphs and tables of the main body, in document order, after a zip-bomb check.

Headers, footers, comments and footnotes are left out: they repeat on every page or sit outside the prose.
"""

from __future__ import annotations

import io
import zipfile

from .errors import ExtractionError, human_bytes
from .result import Deadline, Extracted, ExtractionLimits

_DOCUMENT_PART = "word/document.xml"
_CHUNK = 1 << 16


def read_docx(data: bytes, limits: ExtractionLimits, deadline: Deadline) -> Extracted:
    check_zip(data, limits)
    import docx  # imported here: ~0.1 s, and only DOCX needs it
    from docx.table import Table

    document = docx.Document(io.BytesIO(data))
    blocks: list[str] = []
    total = 0
    for block in document.iter_inner_content():
        deadline.check()
        text = _table_text(block) if isinstance(block, Table) else block.text
        blocks.append(text)
        total += len(text)
        if total > limits.max_chars:
            break  # the rest would be cut anyway
    return Extracted(
        text="\n\n".join(b for b in blocks if b.strip()),
        title=_title(document),
        page_count=None,
        detected_format="docx",
        encoding=None,
    )


def check_zip(data: bytes, limits: ExtractionLimits) -> None:
    """Refuse archives that are not Word documents or that expand far beyond any real document.

    Checks the declared sizes and ratios first (cheap), then decompresses every member in chunks, counting
    the bytes actually produced, so a member that lies about its size is caught before python-docx reads it.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise _corrupt(f"it is not a readable ZIP container ({exc})") from exc
    with archive:
        members = archive.infolist()
        if len(members) > limits.max_zip_members:
            raise _bomb(f"holds {len(members)} files (the limit is {limits.max_zip_members})")
        names = {m.filename for m in members}
        if _DOCUMENT_PART not in names:
            raise ExtractionError(
                "unsupported_type",
                "This ZIP file is not a Word document (it has no word/document.xml). "
                "Upload a PDF, a Word document (.docx), an HTML page, or a Markdown or plain-text file.",
            )
        declared = sum(m.file_size for m in members)
        if declared > limits.max_uncompressed_bytes:
            raise _bomb(f"declares {human_bytes(declared)} of content")
        for member in members:
            if member.file_size > 1_000_000 and member.file_size > limits.max_compression_ratio * max(
                member.compress_size, 1
            ):
                ratio = member.file_size // max(member.compress_size, 1)
                raise _bomb(f"has a part ({member.filename}) compressed {ratio}:1")
        produced = 0
        for member in members:
            try:
                with archive.open(member) as stream:
                    while chunk := stream.read(_CHUNK):
                        produced += len(chunk)
                        if produced > limits.max_uncompressed_bytes:
                            raise _bomb(f"expands to more than {human_bytes(limits.max_uncompressed_bytes)}")
            except (
                zipfile.BadZipFile,
                zipfile.LargeZipFile,
                NotImplementedError,
                RuntimeError,
                OSError,
            ) as exc:
                # RuntimeError: an encrypted member; NotImplementedError: an exotic compression method
                raise _corrupt(f"part {member.filename} cannot be unpacked ({exc})") from exc
            except EOFError as exc:
                raise _corrupt(f"part {member.filename} is cut short") from exc


def _table_text(table: object) -> str:
    rows: list[str] = []
    for row in table.rows:  # type: ignore[attr-defined]
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell is repeated once per grid column it spans
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        rows.append("\t".join(cells))
    return "\n".join(rows)


def _title(document: object) -> str | None:
    title = (document.core_properties.title or "").strip()  # type: ignore[attr-defined]
    if title:
        return title
    for paragraph in document.paragraphs[:50]:  # type: ignore[attr-defined]
        style = paragraph.style.name if paragraph.style is not None else ""
        if style in ("Title", "Heading 1") and paragraph.text.strip():
            return paragraph.text.strip()
    return None


def _bomb(detail: str) -> ExtractionError:
    return ExtractionError(
        "decompression_bomb",
        f"This Word file {detail}, far more than any real document; it looks damaged or built to exhaust "
        "the server. Open it in Word, save it again and upload the new copy.",
    )


def _corrupt(detail: str) -> ExtractionError:
    return ExtractionError(
        "corrupt_file",
        f"This Word document is damaged: {detail}. Open it in Word (which can often repair it), save it "
        "again and upload the new copy.",
    )
