"""Chunks sized in the embedder's tokens, with spans that slice back to their text."""

from __future__ import annotations

import itertools

from sutazai.documents.chunking import chunk, count_tokens, tokenizer
from sutazai.documents.parsing import MARKDOWN, parse
from tests.documents.test_parsing import PLANTED, make_pdf

SENTENCES = [f"Sentence number {i} talks about topic {i % 7} with some more words to pad it out." for i in range(120)]
TEXT = " ".join(SENTENCES[:40]) + "\n\n" + " ".join(SENTENCES[40:80]) + "\n\n" + " ".join(SENTENCES[80:])


def test_the_tokenizer_does_not_truncate():
    assert count_tokens(TEXT) > 1000 and tokenizer().truncation is None


def test_chunks_fit_the_token_budget_and_their_spans_slice_back():
    chunks = chunk(TEXT, tokens=64, overlap=10)
    assert len(chunks) > 10
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert TEXT[c.start : c.end] == c.text
        assert 0 < c.tokens <= 64 and c.tokens == count_tokens(c.text)
        assert c.page is None
    assert chunks[0].start == 0 and chunks[-1].end == len(TEXT.rstrip())
    assert sum(c.tokens for c in chunks) >= count_tokens(TEXT) * 0.95  # everything is covered


def test_neighbours_overlap():
    chunks = chunk(TEXT, tokens=64, overlap=20)
    overlapping = sum(1 for a, b in itertools.pairwise(chunks) if b.start < a.end)
    assert overlapping >= len(chunks) // 2


def test_no_overlap_means_disjoint_spans():
    chunks = chunk(TEXT, tokens=64, overlap=0)
    assert all(b.start >= a.end for a, b in itertools.pairwise(chunks))


def test_short_text_is_one_chunk_and_empty_text_none():
    assert [(c.text, c.start, c.end) for c in chunk("  Hello there.  ", tokens=200)] == [("Hello there.", 2, 14)]
    assert chunk("   ") == []


def test_pdf_chunks_carry_their_page():
    filler = " ".join(SENTENCES[:30])
    parsed = parse(make_pdf([filler, PLANTED + " " + filler]), "a.pdf", None)
    chunks = chunk(parsed.text, tokens=50, overlap=5, page_at=parsed.page_at)
    planted = [c for c in chunks if "amber compass" in c.text]
    assert planted and all(c.page == 2 for c in planted)
    assert chunks[0].page == 1
    for c in chunks:
        assert parsed.text[c.start : c.end] == c.text


def test_markdown_splits_at_sections():
    body = " ".join(SENTENCES[:6])
    source = f"# One\n\n{body}\n\n# Two\n\n{body}\n"
    parsed = parse(source.encode(), "a.md", None)
    chunks = chunk(parsed.text, tokens=150, overlap=0, media_type=MARKDOWN)
    assert any(c.text.startswith("# Two") for c in chunks)
    for c in chunks:
        assert parsed.text[c.start : c.end] == c.text and c.tokens <= 150


def test_non_ascii_offsets_are_characters():
    text = "Ünïcödé façade — naïve café. " * 60
    for c in chunk(text, tokens=32, overlap=4):
        assert text[c.start : c.end] == c.text


def test_with_pages_no_chunk_straddles_two_pages():
    first = " ".join(f"Sentence {i} of the first page." for i in range(60))
    second = "The fact on page two."
    text = f"{first}\n\n{second}"
    pages = [(0, len(first), 1), (len(first) + 2, len(text), 2)]
    chunks = chunk(text, tokens=50, overlap=10, pages=pages)
    last = chunks[-1]
    assert last.page == 2 and last.text == second and text[last.start : last.end] == second
    assert all(c.page == 1 for c in chunks[:-1]) and all(c.end <= len(first) for c in chunks[:-1])
