"""The embedded store's engine, in-process: a real qdrant-edge shard in a temporary folder.
The behaviour every store shares is in test_store_contract.py."""

from __future__ import annotations

import pytest

from sutazai.vectors.edge import EdgeVectorStore
from tests.vectors.points import DIM, chunks, new_id, unit


@pytest.fixture
async def store(tmp_path):
    s = EdgeVectorStore(tmp_path / "vectors")
    await s.ensure(DIM)
    yield s
    await s.close()


async def test_ensure_with_another_dimension_raises(store, tmp_path):
    await store.ensure(DIM)
    with pytest.raises(ValueError):
        await store.ensure(DIM * 2)
    await store.close()
    reopened = EdgeVectorStore(tmp_path / "vectors")
    with pytest.raises(ValueError):
        await reopened.ensure(DIM + 1)
    await reopened.close()


async def test_optimize_builds_the_index_and_search_still_filters(tmp_path):
    owner, other = new_id(), new_id()
    store = EdgeVectorStore(tmp_path / "vectors", optimize_threshold=300)
    await store.ensure(DIM)
    await store.upsert(chunks(new_id(), owner, 200))
    await store.upsert(chunks(new_id(), other, 200))  # passes the threshold: optimized here
    assert store.shard.optimizations == 1
    await store.upsert(chunks(new_id(), other, 10))  # not another 300 since: no second optimize
    assert store.shard.optimizations == 1
    hits = await store.search(unit(1), owner_id=owner, top_k=50)
    assert len(hits) == 50 and all(h.score == pytest.approx(1.0, abs=1e-3) for h in hits[:25])
    assert await store.count() == 410
    await store.close()
