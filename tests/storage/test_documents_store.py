"""Documents and their chunks through DocumentStore, on the real Postgres (migration 0004 included)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from sutazai.documents.chunking import Chunk
from sutazai.errors import InvalidInput, NotFound
from sutazai.storage.db import create_pool
from sutazai.storage.documents import DocumentStore, chunk_id
from tests.helpers import fresh_database


@pytest.fixture
async def store():
    async with fresh_database("sutazai_documents_test") as url:
        pool = await create_pool(url, min_size=1, max_size=4)
        try:
            yield DocumentStore(pool)
        finally:
            await pool.close()


async def new_owner(store: DocumentStore) -> uuid.UUID:
    owner = uuid.uuid4()
    await store.pool.execute(
        "INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, 'x', 'user')", owner, owner.hex
    )
    return owner


async def new_document(store: DocumentStore, owner: uuid.UUID, filename: str = "a.txt"):
    return await store.create(
        uuid.uuid4(), owner, filename=filename, media_type="text/plain", size_bytes=12, sha256="ab" * 32
    )


def chunks_of(*texts: str, page: int | None = None) -> list[Chunk]:
    out, position = [], 0
    for i, text in enumerate(texts):
        out.append(Chunk(i, text, position, position + len(text), page, len(text.split())))
        position += len(text) + 1
    return out


async def ready_with(store: DocumentStore, owner: uuid.UUID, *texts: str, filename: str = "a.txt"):
    document = await new_document(store, owner, filename)
    await store.replace_chunks(document.id, chunks_of(*texts))
    await store.set_status(document.id, "ready")
    return document


async def test_create_is_queued_and_get_is_the_owners_only(store):
    owner, other = await new_owner(store), await new_owner(store)
    document = await new_document(store, owner, "report.pdf")
    assert document.status == "queued" and document.chunks_total == 0 and document.indexed_at is None
    assert (await store.get(document.id, owner)) == document
    with pytest.raises(NotFound):
        await store.get(document.id, other)
    with pytest.raises(NotFound):
        await store.get(uuid.uuid4(), owner)
    assert (await store.find(document.id)) == document


async def test_page_is_newest_first_and_per_owner(store):
    owner, other = await new_owner(store), await new_owner(store)
    made = [await new_document(store, owner, f"{i}.txt") for i in range(3)]
    await new_document(store, other)
    items, total = await store.page(owner, limit=2, offset=0)
    assert total == 3 and [d.id for d in items] == [made[2].id, made[1].id]
    items, total = await store.page(owner, limit=2, offset=2)
    assert [d.id for d in items] == [made[0].id]


async def test_status_progress_and_failure(store):
    document = await new_document(store, await new_owner(store))
    ids = await store.replace_chunks(document.id, chunks_of("one", "two", "three"))
    assert ids == [chunk_id(document.id, i) for i in range(3)]
    indexing = await store.set_status(document.id, "indexing")
    assert indexing.status == "indexing" and indexing.chunks_total == 3 and indexing.chunks_indexed == 0
    await store.set_progress(document.id, 2)
    ready = await store.set_status(document.id, "ready", pages=4)
    assert ready.chunks_indexed == 2 and ready.pages == 4 and ready.indexed_at is not None and ready.error is None
    failed = await store.set_status(document.id, "failed", error={"code": "x", "message": "boom"})
    assert failed.error == {"code": "x", "message": "boom"}
    with pytest.raises(NotFound):
        await store.set_status(uuid.uuid4(), "ready")


async def test_replace_chunks_replaces_and_ids_are_stable(store):
    owner = await new_owner(store)
    document = await new_document(store, owner)
    first = await store.replace_chunks(document.id, chunks_of("alpha", "beta", "gamma"))
    again = await store.replace_chunks(document.id, chunks_of("alpha", "beta"))
    assert again == first[:2]
    stored = await store.chunks_by_ids([(document.id, 0), (document.id, 1), (document.id, 2)])
    assert [c.text for c in stored] == ["alpha", "beta"]
    assert (await store.get(document.id, owner)).chunks_total == 2
    with pytest.raises(NotFound):
        await store.replace_chunks(uuid.uuid4(), chunks_of("x"))


async def test_chunks_by_ids_keeps_the_order_asked_and_the_owner(store):
    owner, other = await new_owner(store), await new_owner(store)
    a = await ready_with(store, owner, "first chunk", "second chunk", filename="a.pdf")
    b = await ready_with(store, other, "not yours")
    found = await store.chunks_by_ids([(a.id, 1), (b.id, 0), (a.id, 0)])
    expected = [("second chunk", "a.pdf"), ("not yours", "a.txt"), ("first chunk", "a.pdf")]
    assert [(c.text, c.filename) for c in found] == expected
    assert found[0].start_char == len("first chunk") + 1 and found[0].id == chunk_id(a.id, 1)
    mine = await store.chunks_by_ids([(a.id, 1), (b.id, 0)], owner_id=owner)
    assert [c.text for c in mine] == ["second chunk"]
    assert await store.chunks_by_ids([]) == []


async def test_keyword_search_finds_a_planted_term_for_its_owner_only(store):
    owner, other = await new_owner(store), await new_owner(store)
    a = await ready_with(store, owner, "Weather was mild all week.", "The zeppelin landed on the pier at dawn.")
    b = await ready_with(store, owner, "Zeppelins are airships.", "Nothing here.")
    await ready_with(store, other, "Another zeppelin story.")
    hits = await store.keyword_search(owner, "zeppelin", top_k=10)
    assert {(h.document_id, h.chunk_index) for h in hits} == {(a.id, 1), (b.id, 0)}  # stemmed: zeppelins
    assert all(0 < h.score < 1 for h in hits)
    only_b = await store.keyword_search(owner, "zeppelin", top_k=10, document_ids=[b.id])
    assert [(h.document_id, h.text) for h in only_b] == [(b.id, "Zeppelins are airships.")]
    assert await store.keyword_search(owner, '"pier at dawn" -weather', top_k=1) != []
    assert await store.keyword_search(owner, "submarine", top_k=10) == []
    assert await store.keyword_search(owner, "the and", top_k=10) == []  # stop words only


async def test_keyword_search_skips_documents_not_ready(store):
    owner = await new_owner(store)
    document = await new_document(store, owner)
    await store.replace_chunks(document.id, chunks_of("a walrus appears"))
    await store.set_status(document.id, "indexing")
    assert await store.keyword_search(owner, "walrus", top_k=5) == []


async def test_delete_returns_the_row_and_takes_the_chunks(store):
    owner, other = await new_owner(store), await new_owner(store)
    document = await ready_with(store, owner, "some text")
    with pytest.raises(NotFound):
        await store.delete(document.id, other)
    deleted = await store.delete(document.id, owner)
    assert deleted.id == document.id and deleted.filename == "a.txt"
    assert await store.pool.fetchval("SELECT count(*) FROM document_chunks") == 0
    with pytest.raises(NotFound):
        await store.delete(document.id, owner)


async def test_deleting_the_user_deletes_their_documents(store):
    owner = await new_owner(store)
    await ready_with(store, owner, "text")
    await store.pool.execute("DELETE FROM users WHERE id = $1", owner)
    assert await store.pool.fetchval("SELECT count(*) FROM documents") == 0
    assert await store.pool.fetchval("SELECT count(*) FROM document_chunks") == 0


async def test_tasks_accept_the_index_kind_and_still_refuse_others(store):
    owner = await new_owner(store)
    for kind in ("agent", "orchestrate", "index"):
        await store.pool.execute(
            "INSERT INTO tasks (id, owner_id, kind, input, status, max_attempts) VALUES ($1, $2, $3, '', 'queued', 1)",
            uuid.uuid4(),
            owner,
            kind,
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await store.pool.execute(
            "INSERT INTO tasks (id, owner_id, kind, input, status, max_attempts) VALUES ($1, $2, 'x', '', 'queued', 1)",
            uuid.uuid4(),
            owner,
        )


# -- index_document on the real pieces: this store, the MiniLM engine, the embedded vector store --


class EngineEmbedder:
    """The embedder deployment's engine, called in this process (what the deployment runs)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.calls: list[int] = []

    async def embed(self, texts: list[str]):
        self.calls.append(len(texts))
        return await asyncio.to_thread(self.engine.embed, texts)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from sutazai.catalog import ModelCatalog
    from sutazai.engines.fastembed_engine import FastEmbedEngine
    from sutazai.settings import PROJECT_ROOT

    spec = ModelCatalog.load(PROJECT_ROOT / "models").embedders["minilm-l6"]
    return FastEmbedEngine(spec, tmp_path_factory.mktemp("embedders"))


async def test_index_document_stores_chunks_and_vectors_and_reindexing_replaces(store, engine, tmp_path):
    from sutazai.documents.indexing import index_document
    from sutazai.documents.parsing import parse
    from sutazai.settings import Settings
    from sutazai.vectors.edge import EdgeVectorStore
    from tests.documents.test_parsing import PLANTED, make_pdf

    owner = await new_owner(store)
    filler = " ".join(f"Paragraph sentence {i} is about the weather and the harbour." for i in range(150))
    data = make_pdf([filler, PLANTED + " " + filler])  # each part runs over several pages
    parsed = parse(data, "a.pdf", None)
    planted_page = parsed.page_at(parsed.text.index("amber compass"))
    assert planted_page is not None and planted_page > 1
    document = await store.create(
        uuid.uuid4(), owner, filename="a.pdf", media_type="application/pdf", size_bytes=len(data), sha256="0" * 64
    )
    vectors = EdgeVectorStore(tmp_path / "vectors")
    embedder = EngineEmbedder(engine)
    settings = Settings(_env_file=None, chunk_tokens=60, chunk_overlap_tokens=10)
    seen: list[tuple[int, int]] = []

    async def progress(done: int, total: int) -> None:
        seen.append((done, total))

    try:
        total = await index_document(
            document, data, store=store, embedder=embedder, vectors=vectors, settings=settings, progress=progress
        )
        assert total > 32 and embedder.calls[0] == 32 and sum(embedder.calls) == total
        assert seen[-1] == (total, total) and [d for d, _ in seen] == sorted(d for d, _ in seen)
        ready = await store.get(document.id, owner)
        assert (ready.status, ready.chunks_total, ready.chunks_indexed) == ("ready", total, total)
        assert ready.pages == len(parsed.pages)
        assert await vectors.count(document_id=str(document.id)) == total

        query = (await embedder.embed(["Where is the amber compass hidden?"])).vectors[0]
        hits = await vectors.search(query, owner_id=str(owner), top_k=3)
        best = await store.chunks_by_ids([(uuid.UUID(h.document_id), h.chunk_index) for h in hits], owner_id=owner)
        assert "amber compass" in best[0].text and best[0].page == planted_page
        assert (await store.keyword_search(owner, "quartermaster compass", top_k=3))[0].page == planted_page

        again = await index_document(document, data, store=store, embedder=embedder, vectors=vectors, settings=settings)
        assert again == total and await vectors.count(document_id=str(document.id)) == total

        broken = await store.create(
            uuid.uuid4(), owner, filename="b.pdf", media_type="application/pdf", size_bytes=9, sha256="0" * 64
        )
        with pytest.raises(InvalidInput):
            await index_document(
                broken, b"%PDF-1.7\n\x00", store=store, embedder=embedder, vectors=vectors, settings=settings
            )
        failed = await store.get(broken.id, owner)
        assert failed.status == "failed" and failed.error["code"] == "unreadable_document"
    finally:
        await vectors.close()
