"""Every file in shared/data/documents: readable ones give sensible text, unreadable ones a precise reason.

Runs through ``extract`` (the sandboxed path the worker uses); files are read from the shared folder, never
copied into the repository.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from workers.extraction import Extracted, ExtractionError, Sandbox
from workers.extraction.result import ExtractionLimits

# file -> (format, encoding, page_count, phrases that must appear, phrases that must not)
READABLE = {
    "alice_in_wonderland_gutenberg_pg11.txt": (
        "txt",
        "utf-8",
        None,
        ["Alice was beginning to get very tired", "THE END"],
        [],
    ),
    "bbc_sport_199_cp1252.txt": ("txt", "cp1252", None, ["Chelsea sack Mutu", "£15.8m", "Mutu"], ["\ufffd"]),
    "fake_text_utf16le_bom.txt": ("txt", "utf-16-le", None, ["Hamburgers are delicious", "Doylestown"], []),
    "udhr_article1_multilingual_utf8.txt": (
        "txt",
        "utf-8",
        None,
        ["All human beings are born free", "Все люди рождаются свободными"],
        [],
    ),
    "cp1252_multilingual.html": (
        "html",
        "cp1252",
        None,
        ["schöne Frau", "15,50 €", "El niño comió", "João", "åt köttbullar"],
        ["\ufffd"],
    ),
    "wikipedia_mozilla_article.html": (
        "html",
        "utf-8",
        None,
        ["Mozilla is a free-software community", "Jamie Zawinski", "Mozilla Summit"],
        # scripts, styles, navigation, edit links, reference list, footer
        [
            "wgCanonicalNamespace",
            "function(",
            "mw-",
            "[edit]",
            "Retrieved",
            "Jump to",
            "Privacy policy",
            "Navigation menu",
            "External links",
        ],
    ),
    "dmca_copyright_office_summary_1998.pdf": (
        "pdf",
        None,
        18,
        ["Digital Millennium Copyright Act", "Copyright Office"],
        [],
    ),
    "irs_form1040nr_instructions_2007.pdf": ("pdf", None, 50, ["1040NR", "nonresident alien"], []),
    "siege_of_vicksburg_scan_with_ocr.pdf": ("pdf", None, 6, ["VICKSBURG"], []),
    "zen_of_python_corrupted.pdf": (
        "pdf",
        None,
        1,
        ["Beautiful is better than ugly", "Namespaces are one honking great idea"],
        [],
    ),
    "doj_chapter13_trustee_handbook_1page.docx": ("docx", None, None, ["CHAPTER 1"], []),
    "doj_chapter13_trustee_handbook_2012.docx": (
        "docx",
        None,
        None,
        ["Standing Trustees", "U.S. Department of Justice", "Related Provisions:"],
        [],
    ),
}
UNREADABLE = {
    "password_protected_openpassword.pdf": "password_protected",
    "huckleberry_finn_p22_scanned_image_only.pdf": "no_text_layer",
    "invalid_header_and_eof_only.pdf": "corrupt_file",
}


@pytest.fixture(scope="module")
def read(documents: Path, sandbox: Sandbox) -> Callable[[str], Extracted]:
    """Extract each shared readable document once per module (the large ones take seconds)."""
    cache: dict[str, Extracted] = {}

    def read(name: str) -> Extracted:
        if name not in cache:
            cache[name] = sandbox.extract((documents / name).read_bytes(), name, None, ExtractionLimits())
        return cache[name]

    return read


def test_every_shared_document_is_covered(documents: Path) -> None:
    assert {p.name for p in documents.iterdir()} == set(READABLE) | set(UNREADABLE)


@pytest.mark.parametrize("name", sorted(READABLE))
def test_readable_document(name: str, read: Callable[[str], Extracted]) -> None:
    fmt, encoding, pages, present, absent = READABLE[name]
    result = read(name)
    assert (result.detected_format, result.encoding, result.page_count) == (fmt, encoding, pages)
    assert result.text == result.text.strip() and len(result.text) > 100
    assert not result.truncated
    for phrase in present:
        assert phrase in result.text, phrase
    for phrase in absent:
        assert phrase not in result.text, phrase


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_unreadable_document(name: str, documents: Path, sandbox: Sandbox) -> None:
    with pytest.raises(ExtractionError) as caught:
        sandbox.extract((documents / name).read_bytes(), name, None, ExtractionLimits())
    assert caught.value.code == UNREADABLE[name]
    assert len(caught.value.message) > 40  # a sentence a person can act on, not a bare code


def test_corrupted_pdf_recovers_its_930_characters(read: Callable[[str], Extracted]) -> None:
    result = read("zen_of_python_corrupted.pdf")
    assert 850 <= len(result.text) <= 1000
    assert result.text.startswith("Beautiful is better than ugly.")


def test_password_message_says_what_to_do(documents: Path, sandbox: Sandbox) -> None:
    with pytest.raises(ExtractionError) as caught:
        sandbox.extract(
            (documents / "password_protected_openpassword.pdf").read_bytes(),
            "p.pdf",
            None,
            ExtractionLimits(),
        )
    assert "password" in caught.value.message and "upload it again" in caught.value.message


def test_titles(read: Callable[[str], Extracted]) -> None:
    def title(name: str) -> str | None:
        return read(name).title

    assert title("wikipedia_mozilla_article.html") == "Mozilla"
    assert title("bbc_sport_199_cp1252.txt") == "Chelsea sack Mutu"
    assert title("dmca_copyright_office_summary_1998.pdf") == "The Digital Millennium Copyright Act of 1998"
    assert title("zen_of_python_corrupted.pdf") is None  # its metadata title is a file name


def test_large_docx_keeps_paragraph_and_table_order(read: Callable[[str], Extracted]) -> None:
    text = read("doj_chapter13_trustee_handbook_2012.docx").text
    assert len(text) > 700_000
    assert (
        text.index("U.S. Department of Justice") < text.index("CHAPTER 1") < text.index("Related Provisions:")
    )


def test_repaired_pdf_reports_a_warning(documents: Path, sandbox: Sandbox) -> None:
    data = (documents / "zen_of_python_corrupted.pdf").read_bytes()
    tail = data.rfind(b"startxref")
    offset = int(data[tail:].split()[1])
    broken = data[:tail] + b"startxref\n%d\n%%%%EOF\n" % (offset + 7)  # pypdf must rebuild the xref table
    result = sandbox.extract(broken, "zen.pdf", None, ExtractionLimits())
    assert result.text.startswith("Beautiful is better than ugly.")
    assert any("damaged or non-standard parts" in w for w in result.warnings)
