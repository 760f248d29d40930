"""Vector store: indexing throughput and filtered search latency at 10k chunks.

Indexes N random 384-d chunk vectors (embedding excluded) in batches of 256 through the
`VectorStore` interface, then times Q sequential searches (top 10) filtered by owner, for:
  edge           the embedded engine in-process (sutazai/vectors/edge.py, a qdrant-edge shard)
  edge+optimize  the same shard after `optimize()` built its HNSW segment (time shown as indexing)
  actor          the same engine through the `vector-store` Ray actor (what replicas use)
  qdrant-memory  qdrant-client `:memory:` (QdrantServerStore code, local mode: for comparison)
Each backend runs with all chunks under one owner (the filter matches every point: the worst
case) and spread over 10 owners. A private local Ray is started for the actor.

    .venv/bin/python bench/vector_store.py [--chunks 10000] [--queries 200] [--owners 1,10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np

from sutazai.vectors.store import ChunkVector, VectorStore

DIM = 384
BATCH = 256


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def make_chunks(n: int, owners: list[str], seed: int = 0) -> list[ChunkVector]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    docs = [str(uuid.uuid4()) for _ in range(max(1, n // 20))]  # 20 chunks a document
    return [
        ChunkVector(str(uuid.uuid4()), vectors[i].tolist(), docs[i // 20], owners[(i // 20) % len(owners)], i % 20)
        for i in range(n)
    ]


async def index(store: VectorStore, chunks: list[ChunkVector]) -> float:
    await store.ensure(DIM)
    started = time.perf_counter()
    for i in range(0, len(chunks), BATCH):
        await store.upsert(chunks[i : i + BATCH])
    elapsed = time.perf_counter() - started
    assert await store.count() == len(chunks)
    return len(chunks) / elapsed


async def search(store: VectorStore, owners: list[str], queries: int) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    qs = rng.standard_normal((queries + 10, DIM)).astype(np.float32).tolist()
    for q in qs[:10]:  # warm-up
        await store.search(q, owner_id=owners[0], top_k=10)
    latencies = []
    for k, q in enumerate(qs[10:]):
        started = time.perf_counter()
        hits = await store.search(q, owner_id=owners[k % len(owners)], top_k=10)
        latencies.append(time.perf_counter() - started)
        assert len(hits) == 10
    return percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000


async def run(backend: str, n: int, n_owners: int, queries: int, tmp: Path) -> list[tuple]:
    owners = [str(uuid.uuid4()) for _ in range(n_owners)]
    chunks = make_chunks(n, owners)
    folder = tmp / f"{backend}-{n_owners}"
    rows = []
    if backend == "edge":
        from sutazai.vectors.edge import EdgeVectorStore

        store = EdgeVectorStore(folder, optimize_threshold=0)  # 0: never on its own, timed below
        rate = await index(store, chunks)
        rows.append(("edge in-process", n_owners, f"{rate:,.0f}", *search_cols(await search(store, owners, queries))))
        started = time.perf_counter()
        store.shard.optimize()
        took = time.perf_counter() - started
        p = await search(store, owners, queries)
        rows.append(("edge after optimize", n_owners, f"(optimize {took:.1f} s)", *search_cols(p)))
        await store.close()
    elif backend == "actor":
        from deployments.vector_store import ActorVectorStore, shutdown
        from sutazai.settings import Settings

        namespace = f"sutazai-bench-{uuid.uuid4().hex[:6]}"
        actor_store = ActorVectorStore.connect(Settings(data_dir=folder, qdrant_url=None), namespace=namespace)
        rate = await index(actor_store, chunks)
        p = await search(actor_store, owners, queries)
        rows.append(("edge via Ray actor", n_owners, f"{rate:,.0f}", *search_cols(p)))
        shutdown(namespace)
    else:
        from qdrant_client import AsyncQdrantClient

        from sutazai.vectors.qdrant_server import QdrantServerStore

        mem_store = QdrantServerStore(AsyncQdrantClient(location=":memory:"), "chunks")
        rate = await index(mem_store, chunks)
        p = await search(mem_store, owners, max(20, queries // 4))
        rows.append(("qdrant-client :memory:", n_owners, f"{rate:,.0f}", *search_cols(p)))
        await mem_store.close()
    return rows


def search_cols(p: tuple[float, float]) -> tuple[str, str]:
    return f"{p[0]:.2f}", f"{p[1]:.2f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--owners", default="1,10")
    parser.add_argument("--backends", default="edge,actor,qdrant-memory")
    args = parser.parse_args()
    backends = args.backends.split(",")
    if "actor" in backends:
        import ray

        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            for n_owners in (int(x) for x in args.owners.split(",")):
                rows += await run(backend, args.chunks, n_owners, args.queries, Path(tmp))
    print(f"\n{args.chunks} chunks x {DIM}-d, batches of {BATCH}, top 10 by owner, {os.cpu_count()} cores")
    header = ("store", "owners", "indexed chunks/s", "search p50 ms", "search p99 ms")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    asyncio.run(main())
