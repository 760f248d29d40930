"""The Qdrant server store against qdrant-client's local mode (`:memory:`): the same client API as a
server, so this is the real `QdrantServerStore` code path except the network. The behaviour
every store shares is in test_store_contract.py."""

from __future__ import annotations

import pytest
from qdrant_client import AsyncQdrantClient

from sutazai.vectors.qdrant_server import QdrantServerStore
from tests.vectors.points import DIM, new_id

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect")


@pytest.fixture
async def store():
    s = QdrantServerStore(AsyncQdrantClient(location=":memory:"), "chunks")
    await s.ensure(DIM)
    yield s
    await s.close()


async def test_ensure_with_another_dimension_raises(store):
    await store.ensure(DIM)
    with pytest.raises(ValueError):
        await store.ensure(DIM * 2)
    replica = QdrantServerStore(store.client, "chunks", owns_client=False)  # sees the stored collection
    with pytest.raises(ValueError):
        await replica.ensure(DIM + 1)
    await replica.ensure(DIM)


async def test_counts_and_deletes_before_the_collection_exists_are_zero():
    store = QdrantServerStore(AsyncQdrantClient(location=":memory:"), "chunks")
    assert await store.count() == 0
    assert await store.delete_document(new_id()) == 0
    await store.close()


async def test_vector_store_with_qdrant_url_is_the_server_store():
    from deployments.vector_store import connect_vector_store as vector_store
    from sutazai.settings import Settings

    store = vector_store(Settings(qdrant_url="http://127.0.0.1:6333", vector_collection="chunks_x"))
    assert isinstance(store, QdrantServerStore) and store.collection == "chunks_x"
    await store.close()  # nothing was sent: the client connects on first use
