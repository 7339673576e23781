"""A local document tree as a source: ids are paths, titles and section paths come from the
documents, unparsable files are quarantined with their reason while the others land, and the
listing's fingerprints decide what is read again."""

from __future__ import annotations

import os

import pytest

from indexops.ingest.driver import ingest_path
from tests.unit._helpers import assert_store_matches_ledger, doc_ids_in_store, settings_for

pytestmark = pytest.mark.unit

SMALL = {"chunking": {"strategy": "recursive", "max_tokens": 16, "overlap_tokens": 0, "include_title": False}}
MD = """# Release notes

Version two ships today.

## Fixes

The exporter no longer drops empty rows.

### Windows

Paths with spaces work again.
"""
HTML = """<!doctype html><html><head><title>Pricing</title><script>var tracking = 1;</script></head>
<body><nav>Home Pricing Contact</nav><h1>Pricing</h1><p>Plans start at ten euros.</p>
<h2>Discounts</h2><p>Schools pay half.</p><footer>Copyright</footer></body></html>"""


def _pdf(path, title: str | None, lines: list[str]) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    if title:
        pdf.set_title(title)
    for line in lines:
        pdf.add_page()
        pdf.set_font("helvetica", size=12)
        pdf.multi_cell(0, 8, line)
    pdf.output(str(path))


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "handbook"
    (root / "eng").mkdir(parents=True)
    (root / "eng" / "release.md").write_text(MD, encoding="utf-8")
    (root / "pricing.html").write_text(HTML, encoding="utf-8")
    _pdf(root / "policy.pdf", "Leave policy", ["Twenty days of leave per year.", "Unused days expire in March."])
    _pdf(root / "untitled.pdf", None, ["Visitor badges are returned at the desk."])
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\n")  # cut off: no xref, no trailer
    (root / "logo.html").write_bytes(bytes(range(256)) * 4)  # binary bytes under a .html name
    (root / ".drafts").mkdir()
    (root / ".drafts" / "secret.md").write_text("# Not yet\n\ndraft", encoding="utf-8")
    (root / "data.csv").write_text("id,text\n1,not a document\n", encoding="utf-8")
    return root


def _points(ctx):
    return [v for _, v in ctx.store.iter_points(["doc_id", "title", "text", "metadata"])]


def test_a_tree_lands_with_titles_and_sections_and_bad_files_quarantined(make_ctx, tree):
    ctx = make_ctx(settings_for(SMALL))
    ingest_path(ctx, tree, "documents")
    assert doc_ids_in_store(ctx) == {"eng/release.md", "pricing.html", "policy.pdf", "untitled.pdf"}
    pts = _points(ctx)
    title = {p["doc_id"]: p["title"] for p in pts}
    assert title == {"eng/release.md": "Release notes", "pricing.html": "Pricing", "policy.pdf": "Leave policy",
                     "untitled.pdf": "Visitor badges are returned at the desk."}
    section = {p["text"]: p["metadata"].get("section") for p in pts}
    assert section["Version two ships today."] is None
    assert section["The exporter no longer drops empty rows."] == "Fixes"
    assert section["Paths with spaces work again."] == "Fixes > Windows"
    assert section["Schools pay half."] == "Discounts"
    text = " ".join(p["text"] for p in pts)
    assert "Twenty days of leave" in text and "expire in March" in text
    assert "tracking" not in text and "Copyright" not in text and "Home Pricing Contact" not in text
    assert all(p["metadata"]["source_path"] == p["doc_id"] and "section_starts" not in p["metadata"] for p in pts)
    bad = {q["file"]: q for q in ctx.ledger.list_quarantine("handbook", None)}
    assert set(bad) == {"broken.pdf", "logo.html"}
    assert "PDF" in bad["broken.pdf"]["reason"] and "binary" in bad["logo.html"]["reason"]
    assert bad["logo.html"]["record_id"] == "logo.html"
    assert_store_matches_ledger(ctx)


def test_only_changed_files_are_read_and_vanished_ones_deleted(make_ctx, tree, monkeypatch):
    ctx = make_ctx(settings_for(SMALL))
    ingest_path(ctx, tree, "documents")
    read: list[str] = []
    import indexops.ingest.document_tree as dt

    real = dt.parse_document
    monkeypatch.setattr(dt, "parse_document", lambda name, data: read.append(name) or real(name, data))
    ingest_path(ctx, tree, "documents")
    assert read == []  # quarantined files too: their fingerprint is kept, they are read again when they change

    (tree / "pricing.html").write_text(HTML.replace("Schools pay half.", "Schools pay a third."), encoding="utf-8")
    (tree / "broken.pdf").unlink()
    _pdf(tree / "broken.pdf", "Fixed", ["Now a readable file."])
    (tree / "untitled.pdf").unlink()
    ingest_path(ctx, tree, "documents")
    assert sorted(read) == ["broken.pdf", "pricing.html"]
    assert doc_ids_in_store(ctx) == {"eng/release.md", "pricing.html", "policy.pdf", "broken.pdf"}
    assert "Schools pay a third." in {p["text"] for p in _points(ctx)}
    assert_store_matches_ledger(ctx)


def test_a_file_touched_without_change_is_read_but_not_reembedded(make_ctx, tree):
    from tests.unit.test_embedded_once import CountingEmbedder

    ctx = make_ctx(settings_for(SMALL))
    ctx.embedder = emb = CountingEmbedder(ctx.embedder)
    ingest_path(ctx, tree, "documents")
    before, calls = {pid: v["text"] for pid, v in ctx.store.iter_points(["text"])}, len(emb.calls)
    st = (tree / "eng" / "release.md").stat()
    os.utime(tree / "eng" / "release.md", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    ingest_path(ctx, tree, "documents")
    assert len(emb.calls) == calls  # same text: its chunks are known by id and embed hash
    assert {pid: v["text"] for pid, v in ctx.store.iter_points(["text"])} == before


def test_word_files_land_with_their_sections_and_a_renamed_file_is_quarantined(make_ctx, tmp_path):
    from docx import Document

    root = tmp_path / "policies"
    root.mkdir()
    d = Document()
    d.add_heading("Expenses", level=0)  # the Title style
    d.add_heading("Meals", level=1)
    d.add_paragraph("Dinners up to forty euros.")
    d.add_heading("Hotels", level=1)
    d.add_paragraph("Three stars at most.")
    d.save(str(root / "expenses.docx"))
    (root / "old.docx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1 a legacy .doc renamed")
    ctx = make_ctx(settings_for(SMALL))
    ingest_path(ctx, root, "documents")
    pts = _points(ctx)
    assert {p["doc_id"] for p in pts} == {"expenses.docx"} and {p["title"] for p in pts} == {"Expenses"}
    assert {p["text"]: p["metadata"].get("section") for p in pts} == {
        "Dinners up to forty euros.": "Meals", "Three stars at most.": "Hotels"}
    bad = ctx.ledger.list_quarantine("policies", None)
    assert [(q["file"], q["reason"].split(": ")[:2]) for q in bad] == [("old.docx", ["unreadable document", "DOCX cannot be parsed"])]
    assert_store_matches_ledger(ctx)


def test_an_indexed_file_that_turns_unreadable_leaves_the_index_and_is_quarantined(make_ctx, tree):
    """As a fresh load of the tree as it is now would have it: the file is not a document any more."""
    ctx = make_ctx(settings_for(SMALL))
    ingest_path(ctx, tree, "documents")
    assert "pricing.html" in doc_ids_in_store(ctx)
    (tree / "pricing.html").write_bytes(b"\x00\x01binary now" * 50)
    summary = ingest_path(ctx, tree, "documents")
    assert summary["keys"]["unreadable"] == 1
    assert doc_ids_in_store(ctx) == {"eng/release.md", "policy.pdf", "untitled.pdf"}
    assert "pricing.html" not in ctx.ledger.active_doc_ids("handbook")
    bad = [q for q in ctx.ledger.list_quarantine("handbook", None) if q["file"] == "pricing.html"]
    assert len(bad) == 1 and "binary" in bad[0]["reason"]
    assert_store_matches_ledger(ctx)
