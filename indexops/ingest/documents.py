"""Parse one document file's bytes (Markdown, HTML, plain text, PDF, Word) into text for the index.

Every parser yields the same shape: a title, body text whose paragraphs are separated by a blank
line, and the heading path that applies from each offset, so a chunk can carry its section. Bad
files raise `DocumentUnreadable` with a one-line reason that the quarantine shows as is.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

DOCUMENT_SUFFIXES = (".md", ".markdown", ".html", ".htm", ".txt", ".pdf", ".docx")
_REASON_MAX = 200
# a .docx is a zip read whole into memory, and its XML parsed by lxml at several times its size
_DOCX_MAX_EXPANDED = 256 * 1024 * 1024
_DOCX_MAX_XML_PART = 64 * 1024 * 1024
_HTML_DROP = ["script", "style", "nav", "header", "footer", "aside", "noscript", "template"]
_HTML_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_HTML_BLOCKS = frozenset(
    "address article blockquote body caption dd details div dl dt fieldset figcaption figure form "
    "hr li main ol p section summary table tbody td tfoot th thead tr ul".split()
)


class DocumentUnreadable(Exception):
    """The file cannot be parsed as its type says; the message is the reason shown in quarantine."""


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    text: str
    sections: list[tuple[int, list[str]]]


def _squash(s: str) -> str:
    """Collapse every whitespace run (newlines, NBSP included) to one space."""
    return " ".join(s.split())


class _Builder:
    """Joins paragraphs with blank lines and records the heading path where each section's text
    starts; a heading with no text after it opens nothing, so offsets are strictly increasing."""

    def __init__(self) -> None:
        self.paras: list[str] = []
        self.length = 0
        self.sections: list[tuple[int, list[str]]] = []
        self.stack: list[tuple[int, str]] = []
        self.moved = True  # a heading (or the start) since the last paragraph

    def heading(self, level: int, text: str) -> None:
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, text))
        self.moved = True

    def para(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        offset = self.length + (2 if self.paras else 0)
        if self.moved:
            self.sections.append((offset, [h for _, h in self.stack]))
            self.moved = False
        self.paras.append(text)
        self.length = offset + len(text)

    def done(self, title: str) -> ParsedDocument:
        if not self.paras:
            raise DocumentUnreadable("no text")
        return ParsedDocument(title=title, text="\n\n".join(self.paras), sections=self.sections)


def _decode(data: bytes, suffix: str) -> str:
    """Text formats must be UTF-8; NUL bytes mean a binary file under a text name."""
    if b"\x00" in data:
        raise DocumentUnreadable(f"binary content (NUL bytes) in a {suffix} file")
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        reason = f"not UTF-8 text: invalid byte at offset {e.start + bom}"
        raise DocumentUnreadable(reason) from None


def _md_inline(token) -> str:
    """Inline markup reduced to its text: link text, code content, image alt, breaks as space."""
    out = []
    for c in token.children or []:
        if c.type in ("text", "text_special", "code_inline", "image"):
            out.append(c.content)
        elif c.type == "softbreak":
            out.append(" ")
        elif c.type == "hardbreak":
            out.append("\n")
    return "".join(out)


def _parse_markdown(text: str, stem: str) -> ParsedDocument:
    from markdown_it import MarkdownIt

    from selectolax.lexbor import LexborHTMLParser

    # commonmark's maxNesting=20 silently drops the text of a list nested ten deep; 64 is still
    # far from Python's recursion limit (checked to 3000 levels of `>` and `-`)
    md = MarkdownIt("commonmark", {"maxNesting": 64}).enable(["table", "strikethrough"])
    tokens = md.parse(text)
    b, title, row = _Builder(), None, None
    for i, t in enumerate(tokens):
        if t.type == "heading_open":
            words = _squash(_md_inline(tokens[i + 1]))
            if not words:
                continue
            first_block = not b.paras and not b.stack
            if title is None and t.tag == "h1":
                title = words
                if first_block:
                    continue  # the document's own title heads everything: not a section
            b.heading(int(t.tag[1:]), words)
        elif t.type == "inline" and tokens[i - 1].type in ("th_open", "td_open"):
            row.append(_squash(_md_inline(t)))
        elif t.type == "inline" and tokens[i - 1].type == "paragraph_open":
            b.para(_md_inline(t))
        elif t.type == "tr_open":
            row = []
        elif t.type == "tr_close":
            b.para(" | ".join(c for c in row if c))
        elif t.type in ("fence", "code_block"):
            b.para(t.content)
        elif t.type == "html_block":
            b.para(_squash(LexborHTMLParser(t.content).text(separator=" ")))
    return b.done(title or stem)


def _parse_html(text: str, stem: str) -> ParsedDocument:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(text)
    tree.strip_tags(["script", "style", "noscript", "template"])
    node = tree.css_first("title")
    title = _squash(node.text()) if node is not None else ""
    if not title:  # before nav/header go: a page's own <h1> often sits in its <header>
        node = tree.css_first("h1")
        title = _squash(node.text()) if node is not None else ""
    tree.strip_tags(_HTML_DROP)
    b, buf = _Builder(), []
    root = tree.body if tree.body is not None else tree.root
    todo: list = [(root, False)]  # explicit stack: deep nesting must not hit the recursion limit
    while todo:
        node, leaving = todo.pop()
        tag = node.tag
        if leaving or tag in _HTML_BLOCKS or tag in _HTML_HEADINGS or tag == "pre":
            b.para(_squash("".join(buf)))
            buf.clear()
        if leaving or tag == "-comment":
            continue
        if tag == "-text":
            buf.append(node.text(deep=False))
        elif tag == "br":
            buf.append(" ")
        elif tag in _HTML_HEADINGS:
            words = _squash(node.text())
            at_start = not b.paras and not b.stack
            if words and not (tag == "h1" and at_start and words == title):
                b.heading(_HTML_HEADINGS[tag], words)
        elif tag == "pre":
            b.para(node.text().rstrip())  # code keeps its line breaks
        else:
            if tag in _HTML_BLOCKS:
                todo.append((node, True))
            todo.extend((c, False) for c in reversed(list(node.iter(include_text=True))))
    b.para(_squash("".join(buf)))
    return b.done(title or stem)


def _parse_txt(text: str, stem: str) -> ParsedDocument:
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise DocumentUnreadable("no text")
    return ParsedDocument(title=stem, text=re.sub(r"\n{3,}", "\n\n", text), sections=[(0, [])])


def _reason(e: BaseException) -> str:
    """One clean line from whatever pypdf (or what it calls) raised."""
    from pypdf.errors import PyPdfError

    msg = _squash(str(e))
    if not isinstance(e, PyPdfError) or not msg:
        msg = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    return msg[:_REASON_MAX]


def _strict_reason(data: bytes) -> str | None:
    """Tolerant pypdf only logs the first problem ("EOF marker not found") and then fails with a
    vaguer one ("Stream has ended unexpectedly"); a strict open names the first problem."""
    from pypdf import PdfReader

    try:
        PdfReader(io.BytesIO(data), strict=True)
    except Exception as e:
        return _reason(e)
    return None


def _parse_pdf(data: bytes, stem: str) -> ParsedDocument:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentUnreadable("PDF is encrypted: an empty password does not open it")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        meta = reader.metadata
        meta_title = _squash(str(meta.title or "")) if meta is not None else ""
    except DocumentUnreadable:
        raise
    except Exception as e:  # pypdf raises its own errors and plain ValueError/KeyError alike
        reason = _strict_reason(data) or _reason(e)
        raise DocumentUnreadable(f"PDF cannot be parsed: {reason}") from None
    text = "\n\n".join(p for p in pages if p)
    if not text:
        raise DocumentUnreadable("PDF has no extractable text: pages may be scanned images")
    first_line = next(line.strip() for line in text.splitlines() if line.strip())
    return ParsedDocument(title=meta_title or first_line, text=text, sections=[(0, [])])


def _docx_heading_level(style_name: str) -> int | None:
    """`Heading 2` -> 2 (Word's built-in heading styles, as python-docx names them)."""
    m = re.fullmatch(r"Heading ([1-9])", style_name or "")
    return int(m.group(1)) if m else None


def _parse_docx(data: bytes, stem: str) -> ParsedDocument:
    """Word's paragraphs and tables in body order (a table's rows as `a | b` lines, a table nested
    in a cell after its row); its Heading styles are the sections, the Title style (or the document
    property) the title. Anything python-docx or the zip cannot read is a `DocumentUnreadable`."""
    import zipfile

    from docx import Document

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            parts = z.infolist()
        expanded = sum(i.file_size for i in parts)
        if expanded > _DOCX_MAX_EXPANDED:
            raise DocumentUnreadable(f"DOCX expands to {expanded} bytes, more than {_DOCX_MAX_EXPANDED}")
        big = next((i for i in parts if i.filename.endswith(".xml") and i.file_size > _DOCX_MAX_XML_PART), None)
        if big is not None:
            raise DocumentUnreadable(f"DOCX part {big.filename} is {big.file_size} bytes of XML, more than {_DOCX_MAX_XML_PART}")
        doc = Document(io.BytesIO(data))
        walk = _DocxWalk()
        walk.blocks(doc.iter_inner_content())  # python-docx checks a table's structure only as it is walked
        prop_title = _squash(doc.core_properties.title or "")
    except DocumentUnreadable:
        raise
    except Exception as e:  # not a zip, no word/document.xml, broken XML, an impossible table: python-docx and zipfile raise their own
        msg = _squash(str(e))
        raise DocumentUnreadable(f"DOCX cannot be parsed: {type(e).__name__}{': ' + msg if msg else ''}"[:_REASON_MAX]) from None
    return walk.b.done(prop_title or walk.title or stem)


class _DocxWalk:
    """Collects a Word body into a `_Builder`, remembering the first Title-styled paragraph."""

    def __init__(self) -> None:
        self.b, self.title = _Builder(), None

    def blocks(self, items) -> None:
        from docx.table import Table

        for block in items:
            if isinstance(block, Table):
                self.table(block)
                continue
            words = _squash(block.text)
            style = block.style.name if block.style is not None else ""
            level = _docx_heading_level(style)
            if style == "Title" and self.title is None and words:
                self.title = words
            elif level is not None and words:
                self.b.heading(level, words)
            else:
                self.b.para(block.text)

    def table(self, table) -> None:
        for row in table.rows:
            cells: list = []
            for c in row.cells:  # a cell merged across columns is listed once per column, as the same object
                if not any(c is k for k in cells):
                    cells.append(c)
            self.b.para(" | ".join(t for t in (_squash(c.text) for c in cells) if t))
            for c in cells:
                for inner in c.tables:
                    self.table(inner)


def parse_document(name: str, data: bytes) -> ParsedDocument:
    """Dispatch on the suffix of `name` (case-insensitive).

    Raises DocumentUnreadable with a clear reason rather than returning an empty document, so the
    caller can quarantine the file with that reason.

    Args:
        name: the file's name or path; only its suffix and stem are used.
        data: the file's whole content.

    Returns:
        The title, body text and section offsets; the same bytes always give the same result.

    Raises:
        DocumentUnreadable: unknown suffix, binary or non-UTF-8 text, an encrypted, corrupt or
            textless PDF, a .docx that is no Word file or inflates too far, or nothing left after parsing.
    """
    path = PurePosixPath(name.replace("\\", "/"))
    suffix, stem = path.suffix.lower(), path.stem
    if suffix not in DOCUMENT_SUFFIXES:
        raise DocumentUnreadable(f"unsupported document type {suffix!r}")
    if suffix == ".pdf":
        return _parse_pdf(data, stem)
    if suffix == ".docx":
        return _parse_docx(data, stem)
    text = _decode(data, suffix)
    if suffix in (".md", ".markdown"):
        return _parse_markdown(text, stem)
    if suffix in (".html", ".htm"):
        return _parse_html(text, stem)
    return _parse_txt(text, stem)
