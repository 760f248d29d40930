"""Uploads to text: each supported type from a file the test makes, and the refusals."""

from __future__ import annotations

import io

import pytest

from sutazai.documents import parsing
from sutazai.documents.parsing import DOCX, HTML, MARKDOWN, PDF, TEXT, detect, parse
from sutazai.errors import InvalidInput, UnsupportedMedia

PLANTED = "The quartermaster hid the amber compass under the lighthouse stairs."


def make_pdf(pages: list[str], *, password: str | None = None) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    if password is not None:
        from fpdf.enums import EncryptionMethod

        pdf.set_encryption(owner_password="owner", user_password=password, encryption_method=EncryptionMethod.RC4)
    return bytes(pdf.output())


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Quarterly report", level=1)
    document.add_paragraph("Revenue grew in every region.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "region", "growth"
    table.cell(1, 0).text, table.cell(1, 1).text = "north", "12%"
    document.add_paragraph(PLANTED)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_a_two_page_pdf_keeps_its_pages_and_the_planted_sentence_is_on_page_two():
    parsed = parse(make_pdf(["First page, nothing to see.", PLANTED]), "report.pdf", "application/octet-stream")
    assert parsed.media_type == PDF
    assert [p.number for p in parsed.pages] == [1, 2]
    at = parsed.text.index("amber compass")
    assert parsed.page_at(at) == 2 and parsed.page_at(0) == 1
    second = parsed.pages[1]
    assert "amber compass" in parsed.text[second.start : second.end]


def test_pdf_is_detected_by_its_bytes_whatever_the_name_or_content_type():
    assert detect(make_pdf(["x"]), "notes.txt", "text/plain") == PDF


def test_a_corrupt_pdf_is_422_with_the_reason():
    data = make_pdf(["hello"])
    for broken in (data[: len(data) // 3], b"%PDF-1.7\n" + b"\x00garbage" * 50):
        with pytest.raises(InvalidInput) as caught:
            parse(broken, "broken.pdf", PDF)
        assert "broken.pdf" in caught.value.message


def test_a_pdf_name_without_pdf_bytes_is_422():
    with pytest.raises(InvalidInput):
        parse(b"just some text", "fake.pdf", PDF)


def test_a_password_protected_pdf_is_422():
    with pytest.raises(InvalidInput) as caught:
        parse(make_pdf([PLANTED], password="secret"), "locked.pdf", PDF)
    assert caught.value.code == "encrypted_document"


def test_docx_paragraphs_tables_and_headings():
    parsed = parse(make_docx(), "report.docx", None)
    assert parsed.media_type == DOCX
    assert PLANTED in parsed.text and "Revenue grew" in parsed.text
    assert "north | 12%" in parsed.text
    assert [(s.title, s.level) for s in parsed.sections] == [("Quarterly report", 1)]
    assert parsed.text[parsed.sections[0].start : parsed.sections[0].end] == "Quarterly report"


def test_docx_is_detected_without_the_extension_and_a_plain_zip_is_415():
    assert detect(make_docx(), "upload", None) == DOCX
    out = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("a.txt", "hi")
    with pytest.raises(UnsupportedMedia):
        parse(out.getvalue(), "archive.zip", "application/zip")


def test_a_corrupt_docx_is_422():
    data = make_docx()
    with pytest.raises(InvalidInput):
        parse(data[:200], "broken.docx", DOCX)


def test_markdown_drops_markup_and_keeps_headings_as_lines():
    source = (
        "# Guide\n\nSome **bold** and _italic_ text with a [link](http://x.example).\n\n"
        "## Setup\n\n- one\n- two\n\n```python\nprint('hi')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    parsed = parse(source.encode(), "guide.md", None)
    assert parsed.media_type == MARKDOWN
    lines = parsed.text.split("\n")
    assert "# Guide" in lines and "## Setup" in lines
    assert "Some bold and italic text with a link." in parsed.text
    assert "**" not in parsed.text and "](" not in parsed.text
    assert "print('hi')" in parsed.text and "1 | 2" in parsed.text
    assert [(s.title, s.level) for s in parsed.sections] == [("Guide", 1), ("Setup", 2)]


def test_html_keeps_text_and_skips_script_and_style():
    html = (
        "<html><head><title>Doc</title><style>body{color:red}</style></head><body>"
        "<h1>Heading</h1><p>Hello &amp; welcome</p><script>alert('x')</script><p>Bye<br>now</p></body></html>"
    )
    parsed = parse(html.encode(), "page.html", "text/html")
    assert parsed.media_type == HTML
    assert "Hello & welcome" in parsed.text and "Heading" in parsed.text
    assert "alert" not in parsed.text and "color" not in parsed.text
    assert [s.title for s in parsed.sections] == ["Heading"]


def test_plain_text_with_a_bom_and_crlf():
    parsed = parse("\ufeffline one\r\nline two".encode(), "a.txt", None)
    assert parsed.media_type == TEXT and parsed.text == "line one\nline two"


def test_text_by_content_type_when_the_name_says_nothing():
    assert parse(b"hello", "README", "text/plain; charset=utf-8").media_type == TEXT


def test_unsupported_types_are_415():
    for data, name, content_type in (
        (b"\x89PNG\r\n\x1a\n....", "photo.png", "image/png"),
        (b"MZ\x90\x00", "tool.exe", None),
        (b"hello", "data.bin", "application/octet-stream"),
    ):
        with pytest.raises(UnsupportedMedia):
            parse(data, name, content_type)


def test_binary_or_non_utf8_text_is_422_and_empty_is_422():
    with pytest.raises(InvalidInput):
        parse(b"\xff\xfe\xfa\x00\x00abc\x00", "a.txt", None)
    with pytest.raises(InvalidInput):
        parse(b"caf\xe9", "a.txt", None)
    with pytest.raises(InvalidInput) as caught:
        parse(b"   \n", "a.txt", None)
    assert caught.value.code == "empty_document"


def test_every_parser_is_registered():
    assert set(parsing._PARSERS) == set(parsing.MEDIA_TYPES)
