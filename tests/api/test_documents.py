"""Documents through the running Serve app: upload, durable indexing on the runners (the real
MiniLM embedder deployment, the embedded vector store actor), hybrid search, chat with
citations, owner isolation, deletion, and the index across an app restart."""

from __future__ import annotations

import io
import time
import uuid

import httpx
import pytest
from docx import Document as DocxDocument
from fpdf import FPDF

pytestmark = pytest.mark.integration

MD_FACT = "The lighthouse keeper of Varnholm island is named Ottilie Brandvik."
PDF_FACT = "The secret launch code for project Quillfeather is 7741."
DOCX_FACT = "Zephyrine orchards harvest their blue pears every October."


def markdown_file() -> bytes:
    filler = "\n\n".join(f"## Section {i}\n\nSome ordinary notes about weather and tides, part {i}." for i in range(6))
    return f"# Island notes\n\n{filler}\n\n## Keepers\n\n{MD_FACT}\n".encode()


def pdf_file() -> bytes:
    pdf = FPDF()
    kites = " ".join(f"Kite {i} flew over the hill on a windy afternoon." for i in range(40))  # > one chunk
    for text in (kites, PDF_FACT):
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def docx_file() -> bytes:
    doc = DocxDocument()
    doc.add_heading("Orchard report", level=1)
    doc.add_paragraph("The apple trees were pruned in spring.")
    doc.add_paragraph(DOCX_FACT)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def upload(api: httpx.Client, name: str, data: bytes, content_type: str) -> dict:
    r = api.post("/api/v1/documents", files={"file": (name, data, content_type)})
    assert r.status_code == 202, r.text
    return r.json()


def wait_ready(api: httpx.Client, document_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        doc = api.get(f"/api/v1/documents/{document_id}").json()
        if doc["status"] in ("ready", "failed") or time.monotonic() > deadline:
            return doc
        time.sleep(0.3)


def search(api: httpx.Client, query: str, **extra) -> list[dict]:
    r = api.post("/api/v1/documents/search", json={"query": query, "top_k": 3} | extra)
    assert r.status_code == 200, r.text
    return r.json()["items"]


@pytest.fixture(scope="module")
def documents(api) -> dict[str, dict]:
    """The three test documents, uploaded and indexed."""
    uploaded = {
        "md": upload(api, "island.md", markdown_file(), "text/markdown"),
        "pdf": upload(api, "launch.pdf", pdf_file(), "application/pdf"),
        "docx": upload(api, "orchard.docx", docx_file(), "application/octet-stream"),
    }
    ready = {kind: wait_ready(api, doc["id"]) for kind, doc in uploaded.items()}
    for kind, doc in ready.items():
        assert doc["status"] == "ready", (kind, doc)
    return ready


@pytest.mark.parametrize(
    ("kind", "query", "fact"),
    [
        ("md", "Who keeps the lighthouse on Varnholm?", "Ottilie Brandvik"),
        ("pdf", "What is the launch code for Quillfeather?", "7741"),
        ("docx", "When are the blue pears harvested?", "blue pears"),
    ],
)
def test_search_finds_the_chunk_holding_a_planted_fact(api, documents, kind, query, fact):
    hits = search(api, query)
    assert hits and hits[0]["document_id"] == documents[kind]["id"] and fact in hits[0]["text"], hits


def test_a_pdf_hit_cites_its_page(api, documents):
    [hit] = search(api, "Quillfeather launch code", top_k=1)
    assert hit["page"] == 2 and hit["end_char"] > hit["start_char"]


def test_indexing_progress_is_the_documents_and_the_task_is_listed(api, documents):
    doc = documents["pdf"]
    assert doc["chunks_total"] >= 2 and doc["chunks_indexed"] == doc["chunks_total"] and doc["progress"] == 1
    tasks = api.get("/api/v1/tasks", params={"limit": 100}).json()["items"]
    assert any(t["kind"] == "index" and t["result"] and t["result"]["document_id"] == doc["id"] for t in tasks)


def test_chat_with_documents_answers_with_a_citation_of_the_planted_chunk(api, documents):
    r = api.post(
        "/api/v1/chat",
        json={
            "message": "Who is the lighthouse keeper of Varnholm island?",
            "use_documents": True,
            "max_tokens": 24,
            "temperature": 0,
        },
    )
    assert r.status_code == 200, r.text
    cited = r.json()["citations"]
    assert cited and cited[0]["document_id"] == documents["md"]["id"] and MD_FACT in cited[0]["text"]


def test_openai_chat_with_documents_returns_citations(serve_app, user_headers, documents):
    from openai import OpenAI

    client = OpenAI(base_url=f"{serve_app}/v1", api_key=user_headers["Authorization"].split()[1])
    response = client.chat.completions.create(
        model="gemma3-270m",
        messages=[{"role": "user", "content": "What is the launch code for project Quillfeather?"}],
        max_tokens=16,
        temperature=0,
        extra_body={"use_documents": True, "document_ids": [documents["pdf"]["id"]]},
    )
    citations = response.model_extra["citations"]
    assert citations and {c["document_id"] for c in citations} == {documents["pdf"]["id"]}  # only that document
    assert "7741" in citations[0]["text"]


def test_another_user_cannot_see_download_or_search_a_document(serve_app, new_user_headers, documents):
    other = httpx.Client(base_url=serve_app, headers=new_user_headers("user"), timeout=60)
    doc_id = documents["md"]["id"]
    assert other.get(f"/api/v1/documents/{doc_id}").status_code == 404
    assert other.get(f"/api/v1/documents/{doc_id}/content").status_code == 404
    assert other.get("/api/v1/documents").json()["total"] == 0
    assert search(other, "lighthouse keeper Varnholm") == []
    assert other.delete(f"/api/v1/documents/{doc_id}").status_code == 404


def test_the_original_is_downloaded_as_uploaded(api, documents):
    r = api.get(f"/api/v1/documents/{documents['docx']['id']}/content")
    assert r.status_code == 200 and r.content.startswith(b"PK")  # the .docx (a zip) as uploaded
    assert int(r.headers["content-length"]) == documents["docx"]["size_bytes"]
    assert "orchard.docx" in r.headers["content-disposition"]


def test_an_unsupported_file_is_415_and_an_oversized_one_413(api):
    r = api.post("/api/v1/documents", files={"file": ("tool.exe", b"MZ\x90\x00binary", "application/octet-stream")})
    assert r.status_code == 415, r.text
    big = b"a" * (20 * 1024 * 1024 + 1)
    r = api.post("/api/v1/documents", files={"file": ("big.txt", big, "text/plain")})
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"]


def test_deleting_a_document_removes_it_from_search(api):
    fact = f"The password of the vault is {uuid.uuid4().hex[:8]} said Morwenna."
    doc = wait_ready(api, upload(api, "vault.txt", fact.encode(), "text/plain")["id"])
    assert doc["status"] == "ready"
    assert search(api, "vault password Morwenna")[0]["document_id"] == doc["id"]
    assert api.delete(f"/api/v1/documents/{doc['id']}").status_code == 204
    assert all(h["document_id"] != doc["id"] for h in search(api, "vault password Morwenna"))
    assert api.get(f"/api/v1/documents/{doc['id']}").status_code == 404


def test_detailed_health_shows_the_embedder_and_the_vector_store(admin_api):
    components = admin_api.get("/api/v1/health/detailed").json()["components"]
    assert components["embedder:minilm-l6"]["status"] == "ok" and components["vector_store"]["status"] == "ok"
    assert components["embedder:minilm-l6"]["detail"]["dimension"] == 384


def test_an_agent_with_the_documents_tool_finds_the_owners_planted_fact(api, documents):
    r = api.post(
        "/api/v1/agents/documents-researcher/run",
        json={"input": "What is the launch code for project Quillfeather?", "wait": True, "wait_timeout_s": 120},
    )
    assert r.status_code == 200, r.text
    task_id = r.json()["id"]
    with api.stream("GET", f"/api/v1/tasks/{task_id}/events") as stream:
        lines = [line for line in stream.iter_lines() if line.startswith("data:")]
    results = [line for line in lines if '"type":"tool_result"' in line]
    assert results and "7741" in results[0] and "launch.pdf" in results[0], "\n".join(lines)


def test_the_index_survives_an_app_restart(api, documents, app_env):
    """Last in this module: the Serve app is deleted and deployed again."""
    from ray import serve

    from deployments.app import build_app

    serve.delete("sutazai")
    serve.run(build_app({"env": app_env}), name="sutazai", route_prefix="/")
    hits = search(api, "Who keeps the lighthouse on Varnholm?")
    assert hits and hits[0]["document_id"] == documents["md"]["id"]
