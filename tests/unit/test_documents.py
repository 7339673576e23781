"""Document parsing (indexops/ingest/documents.py): title, text and section paths from Markdown,
HTML, text, PDF and Word bytes (PDFs and .docx files written here by fpdf2 and python-docx), and a clean one-line reason for every file that cannot be read."""

from __future__ import annotations

import pytest
from fpdf import FPDF

from indexops.ingest.documents import DocumentUnreadable, ParsedDocument, parse_document

pytestmark = pytest.mark.unit


def _pdf(pages: list[str], title: str | None = None, user_password: str | None = None) -> bytes:
    pdf = FPDF()
    if title is not None:
        pdf.set_title(title)
    if user_password is not None:
        pdf.set_encryption(owner_password="owner", user_password=user_password)
    pdf.set_font("helvetica", size=12)
    for page in pages:
        pdf.add_page()
        if page:
            pdf.multi_cell(0, 10, page)
    return bytes(pdf.output())


def _unreadable(name: str, data: bytes) -> str:
    with pytest.raises(DocumentUnreadable) as info:
        parse_document(name, data)
    reason = str(info.value)
    assert "\n" not in reason and len(reason) <= 250 and "Traceback" not in reason
    return reason


def _starts(doc: ParsedDocument) -> list[tuple[list[str], str]]:
    """Each section's path with the first 12 characters of its text."""
    return [(path, doc.text[offset : offset + 12]) for offset, path in doc.sections]


# ---- Markdown ---------------------------------------------------------------------------------

def test_title_heading_then_abstract_is_the_exact_shape_retrieval_relies_on():
    doc = parse_document("paper.md", b"# Title\n\nAbstract text.")
    assert doc == ParsedDocument(title="Title", text="Abstract text.", sections=[(0, [])])


GUIDE_MD = b"""# Field Guide

Welcome to the *guide*, see [the docs](https://example.org) and `pip install x`.

## Install

Download the archive.

### Linux

- Use apt
- Or build from source

```sh
make install
```

## Usage

| Flag | Meaning |
|------|---------|
| -v   | verbose |

# Appendix

Last words.
"""


def test_markdown_sections_nest_by_level_and_inline_markup_keeps_its_text():
    doc = parse_document("docs/guide.md", GUIDE_MD)
    assert doc.title == "Field Guide"
    assert doc.text == (
        "Welcome to the guide, see the docs and pip install x."
        "\n\nDownload the archive."
        "\n\nUse apt\n\nOr build from source"
        "\n\nmake install"
        "\n\nFlag | Meaning\n\n-v | verbose"
        "\n\nLast words."
    )
    assert _starts(doc) == [
        ([], "Welcome to t"),
        (["Install"], "Download the"),
        (["Install", "Linux"], "Use apt\n\nOr "),
        (["Usage"], "Flag | Meani"),
        (["Appendix"], "Last words."),
    ]
    assert [offset for offset, _ in doc.sections] == [0, 55, 78, 123, 153]


def test_markdown_h1_after_body_text_is_the_title_and_also_a_section():
    doc = parse_document("notes.markdown", b"Intro.\n\n# Later\n\nMore.\n")
    assert doc.title == "Later"
    assert doc.text == "Intro.\n\nMore."
    assert doc.sections == [(0, []), (8, ["Later"])]


def test_markdown_headings_without_text_between_open_one_section():
    doc = parse_document("a.md", b"## A\n\n### B\n\nbody here\n")
    assert doc.title == "a"  # no H1: the file stem
    assert doc.sections == [(0, ["A", "B"])]


# ---- HTML -------------------------------------------------------------------------------------

PAGE_HTML = b"""<!doctype html>
<html><head><title>Release  Notes</title>
<style>.junk-style { color: red }</style><script>var junkScript = 1;</script></head>
<body>
<header><a href="/">junk header link</a></header>
<nav><ul><li>junk nav item</li></ul></nav>
<main>
<h1>Release Notes</h1>
<p>The   first
   paragraph, <b>bold</b> and <a href="#">linked</a>.<br>Same paragraph.</p>
<h2>Fixes</h2>
<ul><li>Fixed a crash</li><li>Fixed a leak</li></ul>
<h3>Windows</h3>
<div>Path handling<p>now works</p></div>
<noscript>junk noscript</noscript>
<aside>junk aside</aside>
</main>
<footer>junk footer</footer>
</body></html>"""


def test_html_drops_chrome_and_scripts_and_headings_open_sections():
    doc = parse_document("site/notes.HTM", PAGE_HTML)
    assert doc.title == "Release Notes"
    assert "junk" not in doc.text
    assert doc.text == (
        "The first paragraph, bold and linked. Same paragraph."
        "\n\nFixed a crash\n\nFixed a leak"
        "\n\nPath handling\n\nnow works"
    )
    assert _starts(doc) == [
        ([], "The first pa"),
        (["Fixes"], "Fixed a cras"),
        (["Fixes", "Windows"], "Path handlin"),
    ]


def test_html_without_title_takes_the_first_h1():
    html = b"<body><h1>Only Heading</h1><p>Body.</p><h2>Next</h2><p>Two.</p>"
    doc = parse_document("x.html", html)
    assert doc.title == "Only Heading"
    assert doc.text == "Body.\n\nTwo."
    assert doc.sections == [(0, []), (7, ["Next"])]


# ---- plain text -------------------------------------------------------------------------------

def test_txt_title_is_the_stem_and_line_endings_are_normalised():
    data = b"\xef\xbb\xbf\r\n  line one\r\nline two\r\n\r\npara two \r\n"
    doc = parse_document("dir/Read Me.txt", data)
    assert doc.title == "Read Me"
    assert doc.text == "line one\nline two\n\npara two"
    assert doc.sections == [(0, [])]


# ---- PDF --------------------------------------------------------------------------------------

def test_pdf_title_from_metadata_and_text_of_both_pages():
    data = _pdf(["Alpha page speaks first.", "Beta page follows."], title="Quarterly Report")
    doc = parse_document("report.PDF", data)
    assert doc.title == "Quarterly Report"
    assert "Alpha page speaks first." in doc.text and "Beta page follows." in doc.text
    assert doc.text.index("Alpha") < doc.text.index("\n\n") < doc.text.index("Beta")
    assert doc.sections == [(0, [])]


def test_pdf_without_title_metadata_takes_the_first_line():
    doc = parse_document("memo.pdf", _pdf(["Memo Heading\nsecond line", "page two"]))
    assert doc.title == "Memo Heading"


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.4 garbage", b"", b"not a pdf at all"],
    ids=["garbage", "empty", "no-header"],
)
def test_corrupt_pdf_is_unreadable_with_a_pdf_reason(data):
    assert _unreadable("bad.pdf", data).startswith("PDF cannot be parsed: ")


def test_truncated_pdf_names_the_missing_end_marker():
    data = _pdf(["Alpha", "Beta"], title="T")
    reason = _unreadable("cut.pdf", data[: len(data) // 2])
    assert reason.startswith("PDF cannot be parsed: ") and "EOF" in reason


def test_pdf_encrypted_with_a_password_is_unreadable_but_an_empty_password_opens():
    assert "encrypted" in _unreadable("locked.pdf", _pdf(["Secret"], user_password="s3cret"))
    assert "Open text" in parse_document("open.pdf", _pdf(["Open text"], user_password="")).text


def test_pdf_without_text_is_unreadable():
    reason = _unreadable("scan.pdf", _pdf(["", ""], title="Scan"))
    assert reason.startswith("PDF has no extractable text")


# ---- Word ---------------------------------------------------------------------------------------

def _docx(build, title: str | None = None) -> bytes:
    import io

    from docx import Document

    d = Document()
    if title is not None:
        d.core_properties.title = title
    build(d)
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


def _handbook(d) -> None:
    d.add_paragraph("Employee Handbook", style="Title")
    d.add_paragraph("Welcome aboard.")
    d.add_heading("Leave", level=1)
    d.add_paragraph("Twenty days a year.")
    d.add_heading("Parental", level=2)
    d.add_paragraph("Sixteen weeks, paid.")
    t = d.add_table(rows=2, cols=2)
    t.cell(0, 0).text, t.cell(0, 1).text = "Kind", "Days"
    t.cell(1, 0).text, t.cell(1, 1).text = "Sick", "10"
    d.add_heading("Travel", level=1)
    d.add_paragraph("Economy under six hours.")


def test_docx_title_style_headings_and_tables_in_body_order():
    doc = parse_document("hr/handbook.docx", _docx(_handbook))
    assert doc.title == "Employee Handbook"
    assert doc.text == ("Welcome aboard.\n\nTwenty days a year.\n\nSixteen weeks, paid.\n\nKind | Days\n\nSick | 10"
                        "\n\nEconomy under six hours.")
    assert _starts(doc) == [([], "Welcome aboa"), (["Leave"], "Twenty days "), (["Leave", "Parental"], "Sixteen week"),
                            (["Travel"], "Economy unde")]


def _cells_table(d) -> None:
    t = d.add_table(rows=3, cols=3)
    merged = t.cell(0, 0).merge(t.cell(0, 1))
    merged.text = "Plan"
    t.cell(0, 2).text = "Price"
    for col, word in enumerate(["Yes", "Yes", "No"]):
        t.cell(1, col).text = word
    t.cell(2, 0).text = "Notes"
    inner = t.cell(2, 1).add_table(rows=1, cols=2)
    inner.cell(0, 0).text, inner.cell(0, 1).text = "inner", "cell"


def test_docx_table_cells_keep_equal_texts_merged_cells_once_and_nested_tables():
    doc = parse_document("t.docx", _docx(_cells_table))
    assert doc.text == "Plan | Price\n\nYes | Yes | No\n\nNotes\n\ninner | cell"


def test_a_docx_whose_table_python_docx_rejects_is_unreadable_not_a_crash():
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    def build(d):
        d.add_paragraph("Before the table.")
        t = d.add_table(rows=2, cols=1)
        t.cell(0, 0).text = "top"
        vmerge = OxmlElement("w:vMerge")  # "continues the cell above" on the first row: there is none
        t.cell(0, 0)._tc.get_or_add_tcPr().append(vmerge)
        assert vmerge.get(qn("w:val")) is None

    assert _unreadable("bad-table.docx", _docx(build)).startswith("DOCX cannot be parsed: ValueError")


def test_a_docx_with_an_oversized_xml_part_is_refused_unread(monkeypatch):
    import indexops.ingest.documents as documents

    monkeypatch.setattr(documents, "_DOCX_MAX_XML_PART", 500)
    assert _unreadable("big.docx", _docx(_handbook)).startswith("DOCX part ")  # the first part over the bound, whichever


def test_docx_title_property_wins_and_the_stem_is_the_last_resort():
    assert parse_document("a.docx", _docx(_handbook, title="HR Handbook 2026")).title == "HR Handbook 2026"
    assert parse_document("notes/minutes.DOCX", _docx(lambda d: d.add_paragraph("Met at ten."))).title == "minutes"


@pytest.mark.parametrize("data, why", [
    (b"PK\x03\x04 not really a zip", "BadZipFile"),
    (b"%PDF-1.7 a pdf renamed", "BadZipFile"),
])
def test_a_file_that_is_no_word_document_is_unreadable_with_the_reason(data, why):
    assert _unreadable("x.docx", data).startswith(f"DOCX cannot be parsed: {why}")


def test_a_zip_without_a_word_body_is_unreadable():
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "not a document")
    assert _unreadable("x.docx", buf.getvalue()).startswith("DOCX cannot be parsed:")


def test_a_docx_inflating_past_the_limit_is_refused_unread(monkeypatch):
    import indexops.ingest.documents as documents

    data = _docx(_handbook)
    monkeypatch.setattr(documents, "_DOCX_MAX_EXPANDED", 1000)
    assert _unreadable("big.docx", data).startswith("DOCX expands to ")


def test_a_docx_with_headings_only_has_no_text():
    assert _unreadable("h.docx", _docx(lambda d: d.add_heading("Only a heading", level=1))) == "no text"


# ---- unreadable text files --------------------------------------------------------------------

def test_binary_bytes_named_html_are_unreadable():
    data = bytes([0x89, 0x50, 0x4E, 0x47, 0x00, 0x00, 0x1A, 0xFF, 0x00, 0x10])
    assert _unreadable("x.html", data) == "binary content (NUL bytes) in a .html file"


def test_invalid_utf8_names_the_offset_counted_in_the_file():
    assert _unreadable("a.md", b"# T\n\nabc\xff") == "not UTF-8 text: invalid byte at offset 8"
    assert _unreadable("b.txt", b"\xef\xbb\xbfab\xfe") == "not UTF-8 text: invalid byte at offset 5"


def test_unknown_suffix_is_unsupported():
    assert _unreadable("report.doc", b"\xd0\xcf\x11\xe0") == "unsupported document type '.doc'"
    assert _unreadable("README", b"text") == "unsupported document type ''"


@pytest.mark.parametrize(
    "name, data",
    [("e.md", b""), ("w.md", b"  \n\n  "), ("h.md", b"# Only A Title\n"), ("e.txt", b"\r\n"),
     ("s.html", b"<html><script>x()</script><nav>menu</nav></html>")],
)
def test_nothing_left_after_parsing_is_unreadable(name, data):
    assert _unreadable(name, data) == "no text"
