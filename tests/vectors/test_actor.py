"""The embedded store as the app runs it: the named, detached `vector-store` actor on a real local Ray.

Ray is started here (module scope) unless the session already runs one, and stopped after, like
tests/mcp/conftest.py. Each test gets its own namespace (so its own actor) and data folder.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray

from deployments.vector_store import ActorVectorStore, get_or_create, shutdown
from deployments.vector_store import connect_vector_store as vector_store
from sutazai.settings import Settings
from tests.vectors.points import DIM, chunks, unit


@pytest.fixture(scope="module")
def ray_cluster():
    if ray.is_initialized():  # the session already runs a cluster: share it, leave it running
        yield None
        return
    context = ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        namespace="sutazai-vector-tests",
        logging_level="WARNING",
        log_to_driver=False,
    )
    yield context
    ray.shutdown()


@pytest.fixture
def namespace(ray_cluster):
    name = f"sutazai-vectors-{uuid.uuid4().hex[:8]}"
    yield name
    shutdown(name)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, qdrant_url=None)


async def wait_restarted(store: ActorVectorStore, old_pid: int, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            if (await store.status())["pid"] != old_pid:
                return
        except ray.exceptions.RayActorError:
            pass
        assert asyncio.get_running_loop().time() < deadline, "the actor did not come back"
        await asyncio.sleep(0.2)


async def test_vector_store_without_qdrant_url_is_the_actor_client(settings, namespace):
    store = vector_store(settings, namespace=namespace)
    assert isinstance(store, ActorVectorStore)
    await store.ensure(DIM)
    status = await store.status()
    assert status["path"] == str(settings.data_dir / "vectors") and status["dimension"] == DIM


async def test_points_survive_the_actor_being_killed_and_restarted(settings, namespace):
    store = ActorVectorStore.connect(settings, namespace=namespace)
    await store.ensure(DIM)
    owner, doc = str(uuid.uuid4()), str(uuid.uuid4())
    points = chunks(doc, owner, 6)
    await store.upsert(points)
    old_pid = (await store.status())["pid"]

    ray.kill(store.actor, no_restart=False)  # a crash: Ray restarts it (max_restarts), it reloads the shard
    await wait_restarted(store, old_pid)

    assert await store.count(document_id=doc) == 6
    hits = await store.search(unit(4), owner_id=owner, top_k=2)
    assert hits[0].id == points[4].id and hits[0].chunk_index == 4


async def test_two_clients_share_one_store(settings, namespace):
    """Two replicas each get-or-create the actor: they get the same one and see each other's writes."""
    first = ActorVectorStore.connect(settings, namespace=namespace)
    second = ActorVectorStore.connect(settings, namespace=namespace)
    await first.ensure(DIM)
    await second.ensure(DIM)
    owner, doc = str(uuid.uuid4()), str(uuid.uuid4())
    await first.upsert(chunks(doc, owner, 3))
    assert [h.document_id for h in await second.search(unit(0), owner_id=owner, top_k=5)] == [doc] * 3
    assert await second.delete_document(doc) == 3
    assert await first.count() == 0
    assert (await first.status())["pid"] == (await second.status())["pid"]


async def test_owner_filter_holds_through_the_actor(settings, namespace):
    store = ActorVectorStore.connect(settings, namespace=namespace)
    await store.ensure(DIM)
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    await store.upsert(chunks(str(uuid.uuid4()), alice, 3))
    await store.upsert(chunks(str(uuid.uuid4()), bob, 3))
    assert len(await store.search(unit(0), owner_id=alice, top_k=10)) == 3


async def test_dimension_mismatch_raises_value_error_through_the_actor(settings, namespace):
    store = ActorVectorStore.connect(settings, namespace=namespace)
    await store.ensure(DIM)
    with pytest.raises(ValueError):
        await store.ensure(DIM * 2)


def test_get_or_create_returns_the_same_actor(settings, namespace):
    a = get_or_create(settings, namespace)
    b = get_or_create(settings, namespace)
    assert a._actor_id == b._actor_id
