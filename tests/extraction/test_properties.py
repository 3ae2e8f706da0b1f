"""Property: on any bytes, any name and any content type, extraction returns text or an ExtractionError."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from workers.extraction import (
    ERROR_CODES,
    FORMATS,
    ExtractionError,
    ExtractionLimits,
    Sandbox,
    extract_in_process,
)
from workers.extraction.clean import clean_text

NAMES = st.one_of(
    st.sampled_from(
        ["a.pdf", "a.docx", "a.html", "a.htm", "a.md", "a.txt", "a.xlsx", "a.doc", "a", "", "A.PDF"]
    ),
    st.text(max_size=40),
)
CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/pdf",
            "text/html; charset=utf-8",
            "text/html; charset=bogus-charset",
            "text/plain; charset=utf-16",
            "text/markdown",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/octet-stream",
        ]
    ),
    st.text(max_size=30),
)
# Raw bytes, and bytes that start like each format so the parsers themselves get exercised.
PREFIXES = st.sampled_from(
    [
        b"",
        b"%PDF-1.4\n",
        b"PK\x03\x04",
        b"<!DOCTYPE html>",
        b"<html><body>",
        b"\xef\xbb\xbf",
        b"\xff\xfe",
        b"# ",
    ]
)
DATA = st.one_of(
    st.binary(max_size=3000),
    st.builds(lambda p, b: p + b, PREFIXES, st.binary(max_size=3000)),
    st.builds(lambda p, t: p + t.encode("utf-8", "surrogatepass"), PREFIXES, st.text(max_size=2000)),
)
SMALL = ExtractionLimits(max_chars=5000, timeout_s=20)


def _check(data: bytes, filename: str, content_type: str | None) -> None:
    try:
        result = extract_in_process(data, filename, content_type, SMALL)
    except ExtractionError as exc:
        assert exc.code in ERROR_CODES and exc.message
        return
    assert result.text and result.text == clean_text(result.text)  # non-empty, already in its final shape
    assert result.detected_format in FORMATS
    assert len(result.text) <= SMALL.max_chars
    result.text.encode("utf-8")  # storable: no lone surrogates


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=DATA, filename=NAMES, content_type=CONTENT_TYPES)
def test_any_input_yields_text_or_an_extraction_error(
    data: bytes, filename: str, content_type: str | None
) -> None:
    _check(data, filename, content_type)


@settings(max_examples=100, deadline=None, database=None)
@given(text=st.text(min_size=1, max_size=500), codec=st.sampled_from(["utf-8", "utf-16", "utf-8-sig"]))
@example(text="\x000", codec="utf-16")  # FF FE 00 00 ...: a UTF-16 BOM, not UTF-32
def test_unicode_text_round_trips(text: str, codec: str) -> None:
    try:
        data = text.encode(codec)
    except UnicodeEncodeError:
        return  # lone surrogates are not encodable: nothing to upload
    try:
        result = extract_in_process(data, "t.txt", "text/plain", SMALL)
    except ExtractionError as exc:
        assert exc.code in ("no_text", "unsupported_type")  # only whitespace/controls, or binary-looking
        return
    assert result.text == clean_text(text)[: SMALL.max_chars] or result.truncated


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=DATA, filename=NAMES, content_type=CONTENT_TYPES)
def test_sandbox_protocol_carries_any_input(
    data: bytes, filename: str, content_type: str | None, sandbox: Sandbox
) -> None:
    """The same property through the child: any name, type and bytes survive the JSON protocol."""
    try:
        result = sandbox.extract(data, filename, content_type, SMALL)
    except ExtractionError as exc:
        assert exc.code in ERROR_CODES and exc.code != "parser_crashed"
        return
    assert result.text and result.detected_format in FORMATS
