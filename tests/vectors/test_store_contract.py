"""What every vector store does, run against each: the embedded qdrant-edge shard (in-process,
in a temporary folder) and the Qdrant server store (through qdrant-client's local mode: the
same client API as a server, the real `QdrantServerStore` code path except the network)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient

from sutazai.vectors.edge import EdgeVectorStore
from sutazai.vectors.qdrant_server import QdrantServerStore
from sutazai.vectors.store import VectorStore
from tests.vectors.points import DIM, chunks, new_id, unit

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect")

# A store on a folder: opening it again sees what was written.
OPENERS: dict[str, Callable[[Path], VectorStore]] = {
    "edge": lambda folder: EdgeVectorStore(folder / "vectors"),
    "qdrant": lambda folder: QdrantServerStore(AsyncQdrantClient(path=str(folder / "qdrant")), "chunks"),
}


@pytest.fixture(params=sorted(OPENERS))
def open_store(request) -> Callable[[Path], VectorStore]:
    return OPENERS[request.param]


@pytest.fixture
async def store(open_store, tmp_path):
    s = open_store(tmp_path)
    await s.ensure(DIM)
    yield s
    await s.close()


async def test_search_returns_the_nearest_first(store):
    owner, doc = new_id(), new_id()
    points = chunks(doc, owner, 5)
    await store.upsert(points)
    hits = await store.search(unit(3), owner_id=owner, top_k=3)
    assert hits[0].id == points[3].id
    assert hits[0].document_id == doc and hits[0].chunk_index == 3
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(hits) == 3


async def test_owner_filter_never_returns_another_owners_points(store):
    alice, bob = new_id(), new_id()
    await store.upsert(chunks(new_id(), alice, 4))
    bob_points = chunks(new_id(), bob, 4)
    await store.upsert(bob_points)
    hits = await store.search(unit(0), owner_id=alice, top_k=100)
    assert len(hits) == 4
    assert not {h.id for h in hits} & {p.id for p in bob_points}
    assert await store.search(unit(0), owner_id=new_id(), top_k=10) == []


async def test_document_ids_filter_limits_the_search_to_those_documents(store):
    owner, doc_a, doc_b, doc_c = new_id(), new_id(), new_id(), new_id()
    for doc in (doc_a, doc_b, doc_c):
        await store.upsert(chunks(doc, owner, 3))
    hits = await store.search(unit(0), owner_id=owner, top_k=100, document_ids=[doc_a, doc_c])
    assert len(hits) == 6 and {h.document_id for h in hits} == {doc_a, doc_c}
    assert await store.search(unit(0), owner_id=owner, top_k=10, document_ids=[]) == []


async def test_delete_document_removes_all_its_points_and_returns_the_count(store):
    owner, doc, other = new_id(), new_id(), new_id()
    await store.upsert(chunks(doc, owner, 7))
    await store.upsert(chunks(other, owner, 2))
    assert await store.count(document_id=doc) == 7
    assert await store.delete_document(doc) == 7
    assert await store.count(document_id=doc) == 0
    assert await store.count() == 2
    assert all(h.document_id == other for h in await store.search(unit(0), owner_id=owner, top_k=100))
    assert await store.delete_document(doc) == 0


async def test_upsert_of_an_existing_id_replaces_the_point(store):
    owner, doc = new_id(), new_id()
    point = chunks(doc, owner, 1)[0]
    await store.upsert([point])
    await store.upsert([point._replace(vector=unit(5), chunk_index=9)])
    assert await store.count() == 1
    hit = (await store.search(unit(5), owner_id=owner, top_k=1))[0]
    assert hit.id == point.id and hit.chunk_index == 9


async def test_data_survives_closing_and_opening_the_store_again(open_store, tmp_path):
    owner, doc, gone = new_id(), new_id(), new_id()
    first = open_store(tmp_path)
    await first.ensure(DIM)
    points = chunks(doc, owner, 5)
    await first.upsert(points)
    await first.upsert(chunks(gone, owner, 3))
    await first.delete_document(gone)
    await first.close()

    again = open_store(tmp_path)
    await again.ensure(DIM)  # idempotent on an existing shard or collection
    assert await again.count() == 5 and await again.count(document_id=gone) == 0
    assert (await again.search(unit(2), owner_id=owner, top_k=1))[0].id == points[2].id
    await again.close()
