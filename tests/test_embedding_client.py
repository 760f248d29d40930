"""An embedder with no replica running answers a 503 in seconds, not after Serve's 120 s."""

from __future__ import annotations

import time

import pytest
from ray import serve

from deployments.embedder import EmbedderServer
from sutazai.catalog import ModelCatalog
from sutazai.embeddings import EmbeddingClient
from sutazai.errors import Unavailable
from sutazai.settings import Settings


@pytest.fixture(scope="module")
def unplaceable_embedder(serve_app):
    """The real embedder deployment asking for more CPUs than the cluster has: never placed,
    as happened to it on a 2-core laptop when it asked for a whole CPU."""
    spec = ModelCatalog.load(Settings().models_dir).embedders["minilm-l6"]
    handle = serve._run(  # _run: serve.run waits for the replica, which never comes
        EmbedderServer.options(name="embedder-unplaceable", num_replicas=1, ray_actor_options={"num_cpus": 64}).bind(
            spec.model_dump()
        ),
        name="unplaceable-embedder",
        route_prefix=None,
        _blocking=False,
    )
    yield spec, handle
    serve.delete("unplaceable-embedder", _blocking=False)


async def test_an_embedder_without_a_running_replica_is_unavailable_after_the_timeout(unplaceable_embedder):
    spec, handle = unplaceable_embedder
    client = EmbeddingClient(spec, handle, retry_after_s=2, timeout_s=1.5)
    started = time.perf_counter()
    with pytest.raises(Unavailable) as refused:
        await client.embed(["where is the report?"])
    took = time.perf_counter() - started
    assert 1.4 < took < 10, took
    assert refused.value.retry_after_s == 2
    assert "did not answer within 1.5 s" in refused.value.message
