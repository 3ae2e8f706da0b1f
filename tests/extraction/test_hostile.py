"""Generated hostile uploads: each ends in a clear error or a result, quickly, through the real sandbox."""

from __future__ import annotations

import io
import random
import struct
import time
import zipfile

import pytest

from tests.extraction.builders import make_docx, make_pdf
from workers.extraction import ExtractionError, ExtractionLimits, Sandbox, extract

MiB = 1024 * 1024


def code_of(box: Sandbox, data: bytes, filename: str, limits: ExtractionLimits | None = None) -> str:
    with pytest.raises(ExtractionError) as caught:
        box.extract(data, filename, None, limits or ExtractionLimits())
    return caught.value.code


def test_empty_and_one_byte() -> None:
    with pytest.raises(ExtractionError) as caught:
        extract(b"", "empty.txt")
    assert caught.value.code == "empty_file"
    assert extract(b"a", "one.txt").text == "a"
    for data, name in [(b"\x00", "one.bin"), (b"\x00", "one.pdf"), (b"\n", "one.txt")]:
        with pytest.raises(ExtractionError) as caught:
            extract(data, name)
        assert caught.value.code in {"unsupported_type", "corrupt_file", "no_text"}


def test_binary_junk_named_pdf(sandbox: Sandbox) -> None:
    junk = random.Random(0).randbytes(64 * 1024)
    assert code_of(sandbox, junk, "paper.pdf") == "corrupt_file"
    assert code_of(sandbox, b"%PDF-1.7\n" + junk, "paper.pdf") == "corrupt_file"


def _docx_with(member: str, payload: bytes) -> bytes:
    out = io.BytesIO(make_docx(lambda d: d.add_paragraph("A real paragraph.")))
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, payload)
    return out.getvalue()


def test_docx_zip_bomb(sandbox: Sandbox) -> None:
    bomb = _docx_with("word/media/image1.png", bytes(64 * MiB))  # 64 MiB of zeros, ~64 KB compressed
    assert len(bomb) < 200_000
    started = time.monotonic()
    assert code_of(sandbox, bomb, "bomb.docx") == "decompression_bomb"  # ratio guard
    small_budget = ExtractionLimits(max_uncompressed_bytes=8 * MiB, max_compression_ratio=10**6)
    assert code_of(sandbox, bomb, "bomb.docx", small_budget) == "decompression_bomb"  # total guard
    assert time.monotonic() - started < 5


def test_docx_that_lies_about_its_sizes(sandbox: Sandbox) -> None:
    bomb = bytearray(_docx_with("word/media/x.bin", bytes(32 * MiB)))
    # Rewrite the declared uncompressed size of the bomb member (local header and central directory) to 1 KB.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = bomb.rfind(signature)
        struct.pack_into("<I", bomb, start + offset, 1024)
    code = code_of(sandbox, bytes(bomb), "liar.docx", ExtractionLimits(max_uncompressed_bytes=4 * MiB))
    assert code in {"decompression_bomb", "corrupt_file"}


def test_docx_with_too_many_members(sandbox: Sandbox) -> None:
    out = io.BytesIO(make_docx(lambda d: d.add_paragraph("x")))
    with zipfile.ZipFile(out, "a") as archive:
        for i in range(6000):
            archive.writestr(f"customXml/bulk{i}.xml", "")
    assert code_of(sandbox, out.getvalue(), "many.docx") == "decompression_bomb"


def test_pdf_with_thousands_of_pages(sandbox: Sandbox) -> None:
    started = time.monotonic()
    assert code_of(sandbox, make_pdf(3000), "long.pdf") == "too_many_pages"
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_deeply_nested_html(sandbox: Sandbox) -> None:
    depth = 100_000
    page = "<html><body><p>before</p>" + "<div>" * depth + "deep inside" + "</div>" * depth + "<p>after</p>"
    result = sandbox.extract(page.encode(), "deep.html", None, ExtractionLimits())
    assert "before" in result.text and "deep inside" in result.text and "after" in result.text


@pytest.mark.slow
def test_unclosed_nesting_html(sandbox: Sandbox) -> None:
    page = "<html><body>" + "<span><b><i>" * 50_000 + "text at the bottom"
    assert "text at the bottom" in sandbox.extract(page.encode(), "open.html", None, ExtractionLimits()).text


def test_file_at_and_over_the_byte_limit() -> None:
    limits = ExtractionLimits()
    at_limit = (b"lorem ipsum dolor sit amet " * (limits.max_bytes // 27 + 1))[: limits.max_bytes]
    result = extract(
        at_limit, "big.txt", "text/plain", limits
    )  # 20 MiB: parsed in the child, cut to 2M chars
    assert result.truncated and len(result.text) <= limits.max_chars
    with pytest.raises(ExtractionError) as caught:
        extract(at_limit + b"x", "big.txt", "text/plain", limits)
    assert caught.value.code == "too_large" and "20.0 MB" in caught.value.message


def test_hostile_file_names(sandbox: Sandbox) -> None:
    for name in ["../../etc/passwd", "a\x00b.pdf", "\u202egnp.txt", "CON", "x" * 5000 + ".md", ""]:
        assert sandbox.extract(b"plain words here", name, None, ExtractionLimits()).text == "plain words here"
