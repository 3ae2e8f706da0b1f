"""Which reader gets the bytes: magic bytes first, then the file name's extension, then the content type.

Detection only looks at bytes and names; it never parses. Whatever it decides is checked again by the
reader (a zip that is not a Word document, a "PDF" without a cross-reference table), so a wrong name
leads to a clear error, never to a crash.
"""

from __future__ import annotations

import os
import re

from .errors import ExtractionError
from .result import Format

ACCEPTED = "Upload a PDF, a Word document (.docx), an HTML page, or a Markdown or plain-text file."

_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")  # UTF-32 BOMs start with one of these too

_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_OFFICE = "EncryptedPackage".encode("utf-16-le")  # stream name inside a password-protected .docx

# Leading bytes of formats people upload by mistake, named the way they would say them.
_BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
    (b"{\\rtf", "RTF document"),
    (b"%!PS", "PostScript file"),
    (b"\x1f\x8b", "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"\x28\xb5\x2f\xfd", "zstd archive"),
    (b"\x7fELF", "program (ELF executable)"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"ID3", "MP3 audio file"),
    (b"OggS", "Ogg media file"),
    (b"fLaC", "FLAC audio file"),
)

_EXTENSIONS: dict[str, Format] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".md": "md",
    ".markdown": "md",
    ".txt": "txt",
    ".text": "txt",
}
_UNSUPPORTED_EXTENSIONS = {
    ".doc": "old Word (.doc) document",
    ".xls": "Excel spreadsheet",
    ".xlsx": "Excel spreadsheet",
    ".ppt": "PowerPoint presentation",
    ".pptx": "PowerPoint presentation",
    ".odt": "OpenDocument text",
    ".ods": "OpenDocument spreadsheet",
    ".odp": "OpenDocument presentation",
    ".epub": "EPUB e-book",
    ".zip": "ZIP archive",
    ".rtf": "RTF document",
}
_CONTENT_TYPES: dict[str, Format] = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "text/plain": "txt",
}

_NAMES = {"pdf": "PDF", "docx": "Word document (.docx)"}

# Strong HTML markers only (a .txt that merely contains "<p>" stays text).
_HTML_START = re.compile(rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.IGNORECASE | re.DOTALL)


def extension_of(filename: str) -> str:
    return os.path.splitext(filename or "")[1].lower()


def looks_like_text(data: bytes) -> bool:
    """True when the start of the data has the byte profile of text in some 8-bit or UTF-8 encoding."""
    if data.startswith(_BOMS):
        return True
    sample = data[:8192]
    if b"\x00" in sample:
        return False
    controls = sum(1 for b in sample if b < 32 and b not in b"\t\n\r\x0c\x0b\x1b") + sample.count(b"\x7f")
    return controls <= len(sample) // 100


def detect_format(data: bytes, filename: str, content_type: str | None) -> Format:
    """Decide the reader, or raise ExtractionError (unsupported_type, corrupt_file, password_protected)."""
    head = data[:1024]
    claimed = claimed_format(filename, content_type)

    if b"%PDF-" in head:  # the spec tolerates junk before the header
        return "pdf"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        kind = _UNSUPPORTED_EXTENSIONS.get(extension_of(filename))
        if kind and claimed is None:
            raise _unsupported(kind)
        return "docx"  # the DOCX reader says so plainly when the zip holds no Word document
    if data.startswith(_OLE):
        if _ENCRYPTED_OFFICE in data:
            raise ExtractionError(
                "password_protected",
                "This Office document is protected by a password. Open it, remove the password "
                "(File > Info > Protect Document), save it as .docx and upload it again.",
            )
        raise _unsupported("old Microsoft Office (.doc, .xls or .ppt) file")
    for magic, kind in _BINARY_MAGIC:
        if data.startswith(magic):
            raise _unsupported(kind)
    if len(data) > 12 and data[4:8] == b"ftyp":
        raise _unsupported("video or image (MP4/HEIC) file")

    if not looks_like_text(data):
        if claimed in ("pdf", "docx"):
            raise ExtractionError(
                "corrupt_file",
                f"This file is named as a {_NAMES[claimed]} but its content is not one; it may be damaged "
                "or only partly downloaded. Open it on your computer, save it again and upload the new copy.",
            )
        kind = _UNSUPPORTED_EXTENSIONS.get(extension_of(filename), "binary file of an unknown type")
        raise _unsupported(kind)

    if _HTML_START.match(_strip_bom(head)):
        return "html"
    if claimed in ("html", "md", "txt"):
        return claimed
    return "txt"  # text named .pdf/.docx/.xyz or with no name at all: read what is actually there


def claimed_format(filename: str, content_type: str | None) -> Format | None:
    by_name = _EXTENSIONS.get(extension_of(filename))
    if by_name:
        return by_name
    mime = (content_type or "").split(";")[0].strip().lower()
    return _CONTENT_TYPES.get(mime)


def _strip_bom(head: bytes) -> bytes:
    if head.startswith(b"\xef\xbb\xbf"):
        return head[3:]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        # UTF-16 markup: drop the zero bytes so the ASCII pattern can match
        return head[2:].replace(b"\x00", b"")
    return head


def _unsupported(kind: str) -> ExtractionError:
    return ExtractionError("unsupported_type", f"We cannot read this kind of file ({kind}). {ACCEPTED}")
