"""The document pipeline, stage by stage: parse, chunk, embed, index (vectors), in-process.

Each stage is timed on its own over the same generated corpus (a 20-page PDF, a long
Markdown file, a .docx), so the table shows where indexing time goes:

  parse    pypdf / markdown-it-py / python-docx: bytes -> text        (pages/s, MB/s)
  chunk    semantic-text-splitter sized in MiniLM tokens               (chunks/s)
  embed    the MiniLM int8 ONNX engine (the embedder deployment's code) (chunks/s)
  index    the embedded vector store (qdrant-edge), batches of 256     (chunks/s, embedding excluded)

    .venv/bin/python bench/documents.py [--copies 20]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from docx import Document as DocxDocument
from fpdf import FPDF

from sutazai.catalog import ModelCatalog
from sutazai.documents.chunking import chunk
from sutazai.documents.parsing import parse
from sutazai.engines.fastembed_engine import FastEmbedEngine
from sutazai.settings import PROJECT_ROOT
from sutazai.vectors.edge import EdgeVectorStore
from sutazai.vectors.store import ChunkVector

SENTENCES = [
    "The harbour master logs every ship that enters after dark.",
    "Tides here rise twice a day and the spring tides flood the lower quay.",
    "Fishermen sell their catch at dawn in the covered market by the church.",
    "The old lighthouse was automated in 1987 and its keeper moved inland.",
]


def paragraph(i: int) -> str:
    return " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(6)) + f" (note {i})"


def corpus() -> list[tuple[str, bytes]]:
    pdf = FPDF()
    for page in range(20):
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, "\n".join(paragraph(page * 8 + i) for i in range(8)))
    markdown = "\n\n".join(f"## Part {i}\n\n{paragraph(i)}" for i in range(200)).encode()
    doc = DocxDocument()
    for i in range(150):
        doc.add_paragraph(paragraph(i))
    buffer = io.BytesIO()
    doc.save(buffer)
    return [("report.pdf", bytes(pdf.output())), ("notes.md", markdown), ("minutes.docx", buffer.getvalue())]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=5, help="how many times the corpus is run through")
    args = parser.parse_args()
    files = corpus()
    rows = []

    started = time.perf_counter()
    parsed = [parse(data, name, None) for _ in range(args.copies) for name, data in files]
    parse_s = time.perf_counter() - started
    pages = sum(max(len(p.pages), 1) for p in parsed)
    megabytes = args.copies * sum(len(d) for _, d in files) / 1e6
    rows.append(("parse", f"{pages / parse_s:,.0f} pages/s", f"{megabytes / parse_s:,.1f} MB/s"))

    started = time.perf_counter()
    chunks = [
        c
        for p in parsed
        for c in chunk(p.text, media_type=p.media_type, pages=[(s.start, s.end, s.number) for s in p.pages] or None)
    ]
    chunk_s = time.perf_counter() - started
    rows.append(("chunk", f"{len(chunks) / chunk_s:,.0f} chunks/s", f"{len(chunks)} chunks"))

    spec = ModelCatalog.load(PROJECT_ROOT / "models").embedders["minilm-l6"]
    engine = FastEmbedEngine(spec, Path(tempfile.mkdtemp(prefix="bench-embed-")))
    sample = [c.text for c in chunks[:256]]
    engine.embed(sample[:8])  # warm-up
    started = time.perf_counter()
    vectors = []
    for start in range(0, len(sample), 32):
        vectors.extend(engine.embed(sample[start : start + 32]).vectors)
    embed_s = time.perf_counter() - started
    rows.append(("embed", f"{len(sample) / embed_s:,.0f} chunks/s", "batches of 32, 1 process"))

    store = EdgeVectorStore(Path(tempfile.mkdtemp(prefix="bench-vectors-")))
    await store.ensure(len(vectors[0]))
    owner, document = str(uuid.uuid4()), str(uuid.uuid4())
    points = [ChunkVector(str(uuid.uuid4()), vectors[i % len(vectors)], document, owner, i) for i in range(len(chunks))]
    started = time.perf_counter()
    for start in range(0, len(points), 256):
        await store.upsert(points[start : start + 256])
    index_s = time.perf_counter() - started
    rows.append(("index", f"{len(points) / index_s:,.0f} chunks/s", "edge store in-process, batches of 256"))
    await store.close()

    print(f"\ndocument pipeline, {args.copies} x (20-page PDF, 200-section Markdown, 150-paragraph .docx)\n")
    print(f"{'stage':<6} | {'rate':>16} | notes")
    print(f"{'-' * 6} | {'-' * 16} | {'-' * 40}")
    for stage, rate, note in rows:
        print(f"{stage:<6} | {rate:>16} | {note}")


if __name__ == "__main__":
    asyncio.run(main())
