"""Small documents built in the tests (never copied into the repository)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any


def make_docx(build: Callable[[Any], None]) -> bytes:
    """A .docx made by python-docx; ``build`` adds content to the empty document."""
    import docx

    document = docx.Document()
    build(document)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_pdf(pages: int) -> bytes:
    """A PDF of blank pages (no text, no images)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(72, 72)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
