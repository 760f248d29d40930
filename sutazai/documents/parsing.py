"""Uploaded files to plain text: .txt, .md, .pdf, .docx and .html.

The type is decided by the bytes (`%PDF`, a zip holding `word/document.xml`) and the
file name's extension, never by the client's content type alone. What cannot be read
is `UnsupportedMedia` (415); a file of a known type that its parser refuses (corrupt,
encrypted, no text) is `InvalidInput` (422) with the parser's reason, never a 500.

PDFs keep their page boundaries (`ParsedDocument.pages`, character offsets into
`text`), so a chunk can cite its page; Markdown, .docx and HTML keep their headings
(`sections`).
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import PurePosixPath

from sutazai.errors import InvalidInput, UnsupportedMedia

TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
MEDIA_TYPES = (TEXT, MARKDOWN, HTML, PDF, DOCX)

EXTENSIONS = {
    ".txt": TEXT,
    ".text": TEXT,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".pdf": PDF,
    ".docx": DOCX,
}
_CONTENT_TYPES = {TEXT: TEXT, MARKDOWN: MARKDOWN, "text/x-markdown": MARKDOWN, HTML: HTML}

# A .docx is a zip: refuse one whose members would inflate past this (a zip bomb).
MAX_DOCX_UNZIPPED_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Span:
    """A page (`number` from 1) or a section (`title`, heading `level`) as character offsets into the text."""

    start: int
    end: int
    number: int = 0
    title: str = ""
    level: int = 0


@dataclass(frozen=True)
class ParsedDocument:
    text: str
    media_type: str
    pages: list[Span] = field(default_factory=list)  # PDFs only
    sections: list[Span] = field(default_factory=list)  # headings of .md, .docx, .html

    def page_at(self, offset: int) -> int | None:
        """The page holding character `offset` (None when the document has no pages)."""
        for page in self.pages:
            if offset < page.end or page is self.pages[-1]:
                return page.number
        return None


def detect(data: bytes, filename: str, content_type: str | None = None) -> str:
    """The media type of an upload, from its bytes first, then its extension (and, for text
    without a known extension, the declared content type); `UnsupportedMedia` otherwise."""
    extension = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    by_name = EXTENSIONS.get(extension)
    if b"%PDF-" in data[:1024]:  # the header may follow a little junk (PDF spec: within 1024 bytes)
        return PDF
    if data.startswith(b"PK\x03\x04"):
        if by_name == DOCX or _is_docx(data):
            return DOCX
        raise UnsupportedMedia(f"{filename!r} is a zip archive, not a .docx document")
    if by_name in (PDF, DOCX):
        kind = "PDF" if by_name == PDF else ".docx (zip)"
        raise InvalidInput(f"{filename!r} is not a valid {kind} file: its header is missing")
    declared = _CONTENT_TYPES.get((content_type or "").split(";")[0].strip().lower())
    media_type = by_name or declared
    if media_type is None:
        raise UnsupportedMedia(
            f"cannot read {filename!r}: supported are .txt, .md, .pdf, .docx and .html",
        )
    return media_type


def parse(data: bytes, filename: str, content_type: str | None = None) -> ParsedDocument:
    """The text of an upload; `UnsupportedMedia` or `InvalidInput` when it has none to give."""
    media_type = detect(data, filename, content_type)
    try:
        parsed = _PARSERS[media_type](data)
    except (InvalidInput, UnsupportedMedia):
        raise
    except Exception as exc:  # untrusted bytes: any parser failure is the file's fault
        reason = str(exc) or type(exc).__name__
        raise InvalidInput(f"cannot read {filename!r} as {media_type}: {reason}", code="unreadable_document") from exc
    if not parsed.text.strip():
        raise InvalidInput(f"{filename!r} has no text to index", code="empty_document")
    return parsed


# -- text ------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """Postgres text takes no NUL; line ends are \\n."""
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


def _decode(data: bytes) -> str:
    encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if "\x00" in text:
        raise InvalidInput("the file is binary, not text (it has NUL characters)")
    return _clean(text)


def _parse_text(data: bytes) -> ParsedDocument:
    return ParsedDocument(_decode(data), TEXT)


# -- markdown --------------------------------------------------------------------------


def _parse_markdown(data: bytes) -> ParsedDocument:
    """The text without markup; headings stay as `#` lines (the splitter sizes sections by them)."""
    from markdown_it import MarkdownIt

    source = _decode(data)
    tokens = MarkdownIt("commonmark").enable("table").parse(source)
    blocks: list[str] = []
    headings: list[tuple[int, int, str]] = []  # (block index, level, title)
    level = 0
    row: list[str] | None = None
    for token in tokens:
        if token.type == "heading_open":
            level = int(token.tag[1:])
        elif token.type == "heading_close":
            level = 0
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and row is not None:
            blocks.append(" | ".join(row))
            row = None
        elif token.type == "inline":
            text = _inline_text(token.children or [])
            if row is not None:
                row.append(text.strip())
            elif level:
                headings.append((len(blocks), level, text.strip()))
                blocks.append("#" * level + " " + text.strip())
            elif text.strip():
                blocks.append(text.strip())
        elif token.type in ("fence", "code_block") and token.content.strip():
            blocks.append(token.content.rstrip("\n"))
    text, offsets = _join(blocks)
    sections = [Span(offsets[i], offsets[i] + len(blocks[i]), title=title, level=lvl) for i, lvl, title in headings]
    return ParsedDocument(text, MARKDOWN, sections=sections)


def _inline_text(children: list) -> str:  # list[markdown_it.token.Token]
    out = []
    for child in children:
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append("\n")
        elif child.type == "image":
            out.append(_inline_text(child.children or []))
    return "".join(out)


def _join(blocks: list[str], separator: str = "\n\n") -> tuple[str, list[int]]:
    """The blocks joined, and where each starts in the result."""
    offsets, position = [], 0
    for block in blocks:
        offsets.append(position)
        position += len(block) + len(separator)
    return separator.join(blocks), offsets


# -- pdf -------------------------------------------------------------------------------


def _parse_pdf(data: bytes) -> ParsedDocument:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        # An empty user password is only "encrypted" on paper (printing/copy flags): read it.
        opened = False
        try:
            opened = bool(reader.decrypt(""))
        except Exception:  # unknown algorithm, missing crypto backend: still encrypted
            opened = False
        if not opened:
            raise InvalidInput("the PDF is encrypted with a password", code="encrypted_document")
    blocks = [_clean(page.extract_text() or "").strip() for page in reader.pages]
    text, offsets = _join(blocks)
    pages = [
        Span(start, start + len(block), number=number)
        for number, (start, block) in enumerate(zip(offsets, blocks, strict=True), start=1)
    ]
    if not text.strip():
        raise InvalidInput("the PDF has no extractable text (a scan? OCR is not supported)", code="empty_document")
    return ParsedDocument(text, PDF, pages=pages)


# -- docx ------------------------------------------------------------------------------


def _is_docx(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except zipfile.BadZipFile:
        return False


def _parse_docx(data: bytes) -> ParsedDocument:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        if sum(info.file_size for info in archive.infolist()) > MAX_DOCX_UNZIPPED_BYTES:
            raise InvalidInput("the .docx unpacks to more than 256 MiB", code="document_too_large")
    document = docx.Document(io.BytesIO(data))
    blocks: list[str] = []
    headings: list[tuple[int, int, str]] = []
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            text = _clean(item.text).strip()
            if not text:
                continue
            style = (item.style.name if item.style is not None else "") or ""
            match = re.match(r"(?:Heading (\d)|Title)$", style)
            if match:
                headings.append((len(blocks), int(match.group(1) or 1), text))
            blocks.append(text)
        elif isinstance(item, Table):
            blocks.extend(_table_rows(item))
    text, offsets = _join(blocks)
    sections = [Span(offsets[i], offsets[i] + len(blocks[i]), title=title, level=lvl) for i, lvl, title in headings]
    return ParsedDocument(text, DOCX, sections=sections)


def _table_rows(table: object) -> list[str]:
    rows = []
    for row in table.rows:  # type: ignore[attr-defined]
        cells: list[str] = []
        for cell in row.cells:
            value = _clean(cell.text).strip().replace("\n", " ")
            if not cells or cells[-1] != value:  # merged cells repeat their text
                cells.append(value)
        line = " | ".join(cells).strip(" |")
        if line:
            rows.append(line)
    return rows


# -- html ------------------------------------------------------------------------------

_SKIP = {"script", "style", "noscript", "template", "svg"}
_BLOCK = {
    "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer",
    "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "title", "hr", "dd", "dt", "main", "nav",
}  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


class _TextOf(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.current: list[str] = []
        self.skipping: list[str] = []
        self.heading_level = 0
        self.headings: list[tuple[int, int, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping.append(tag)
        elif tag in _BLOCK:
            self.flush()
            self.heading_level = _HEADINGS.get(tag, 0)
        elif tag in ("td", "th"):
            self.current.append(" | ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:
            self.flush()

    def handle_endtag(self, tag: str) -> None:
        if self.skipping and tag == self.skipping[-1]:
            self.skipping.pop()
        elif tag in _BLOCK:
            self.flush()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.current.append(data)

    def flush(self) -> None:
        text = " ".join("".join(self.current).split()).strip(" |").strip()
        self.current = []
        if text:
            if self.heading_level:
                self.headings.append((len(self.blocks), self.heading_level, text))
            self.blocks.append(text)
        self.heading_level = 0


def _parse_html(data: bytes) -> ParsedDocument:
    parser = _TextOf()
    parser.feed(_decode(data))
    parser.close()
    parser.flush()
    blocks = parser.blocks
    text, offsets = _join(blocks)
    sections = [
        Span(offsets[i], offsets[i] + len(blocks[i]), title=title, level=lvl) for i, lvl, title in parser.headings
    ]
    return ParsedDocument(_clean(text), HTML, sections=sections)


_PARSERS = {TEXT: _parse_text, MARKDOWN: _parse_markdown, PDF: _parse_pdf, DOCX: _parse_docx, HTML: _parse_html}
