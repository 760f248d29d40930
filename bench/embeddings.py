"""Embeddings/s (texts/s) of the embedding model: in-process (the engine the deployment runs)
vs through HTTP `POST /v1/embeddings` (proxy -> ingress -> embedder deployment), at batch 1
and batch 32 (texts per request). Over HTTP, batch 1 is also run with 8 concurrent callers (the
default per-user limit of concurrent model requests):
that is what `@serve.batch` gathers into one model call. Prints a table.

    .venv/bin/python bench/embeddings.py                       # in-process only
    .venv/bin/python bench/embeddings.py --base-url http://127.0.0.1:8000 --token sk-...
    .venv/bin/python bench/embeddings.py --start-app           # starts Ray and the app itself

`--start-app` starts the Serve app like the tests do (DATABASE_URL / REDIS_URL when set,
embedded servers otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from sutazai.catalog import ModelCatalog
from sutazai.settings import PROJECT_ROOT

VOCABULARY = (
    "the a model vector search document retrieval ray serve cluster replica batch token sentence "
    "embedding query answer fast slow small large cat dog river mountain city market bread food "
    "engineer writes reads tests ships runs scales learns quickly carefully today yesterday"
)
WORDS = VOCABULARY.split()


def sentences(n: int, seed: int = 7) -> list[str]:
    """Varied English-like sentences of 6 to 30 words (about 10 to 40 tokens)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 30))).capitalize() + "." for _ in range(n)]


def in_process(spec, texts: list[str], batch: int, threads: int) -> tuple[int, float]:
    from sutazai.engines.fastembed_engine import FastEmbedEngine

    engine = FastEmbedEngine(spec.model_copy(update={"threads": threads}), Path(tempfile.mkdtemp()) / "embedders")
    engine.embed(texts[:batch])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        engine.embed(texts[i : i + batch])
    return len(texts), time.perf_counter() - started


async def over_http(
    base_url: str, token: str, model: str, texts: list[str], batch: int, concurrency: int
) -> tuple[int, float]:
    chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            chunk = queue.get_nowait()
            r = await client.post("/v1/embeddings", json={"model": model, "input": chunk, "encoding_format": "base64"})
            r.raise_for_status()

    limits = httpx.Limits(max_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=300, headers=headers, limits=limits) as client:
        r = await client.post("/v1/embeddings", json={"model": model, "input": texts[:batch]})  # warm-up
        r.raise_for_status()
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return len(texts), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", help="a running app (then --token is needed)")
    parser.add_argument("--token", help="bearer token or API key for --base-url")
    parser.add_argument("--start-app", action="store_true", help="start Ray and the app here for the HTTP rows")
    parser.add_argument("--model", default=None, help="an embedding model (default: the first)")
    parser.add_argument("--texts", type=int, default=512, help="texts per row")
    parser.add_argument("--threads", type=int, nargs="*", default=None, help="onnxruntime threads (in-process)")
    args = parser.parse_args()

    catalog = ModelCatalog.load(PROJECT_ROOT / "models")
    model = args.model or catalog.default_embedder()
    if model is None or model not in catalog.embedders:
        raise SystemExit(f"no embedding model {model!r} in models/")
    spec = catalog.embedders[model]
    texts = sentences(args.texts)
    rows: list[tuple[str, int, int, int, float]] = []  # path, batch, callers, texts, seconds

    for threads in args.threads or [spec.threads]:
        for batch in (1, 32):
            n, wall = in_process(spec, texts if batch > 1 else texts[: max(64, args.texts // 4)], batch, threads)
            rows.append((f"in-process, {threads} thread(s)", batch, 1, n, wall))

    servers = None
    base_url, token = args.base_url, args.token
    if base_url is None and args.start_app:
        from bench.llm_throughput import start_app

        base_url, token, servers = start_app()
    if base_url is not None:
        if not token:
            raise SystemExit("--token is needed with --base-url")
        for batch, callers in ((1, 1), (1, 8), (32, 1), (32, 4)):  # 8: the default per-user concurrency
            sample = texts if batch > 1 or callers > 1 else texts[: max(64, args.texts // 4)]
            n, wall = asyncio.run(over_http(base_url, token, model, sample, batch, callers))
            rows.append(("HTTP /v1/embeddings", batch, callers, n, wall))

    print(
        f"\nmodel {model} ({spec.dimensions}-d, int8 ONNX via fastembed), {args.texts} sentences of 6-30 words, "
        f"{os.cpu_count()} cores; deployment: {spec.resources.num_cpus:g} CPU, {spec.threads} thread(s), "
        f"@serve.batch max {spec.batching.max_batch_size}, wait {spec.batching.batch_wait_timeout_s * 1000:g} ms\n"
    )
    print("| path | texts/request | concurrent callers | texts | wall s | texts/s | ms/request |")
    print("|---|---|---|---|---|---|---|")
    for path, batch, callers, n, wall in rows:
        requests = -(-n // batch)
        per_request_ms = wall / requests * callers * 1000
        print(f"| {path} | {batch} | {callers} | {n} | {wall:.2f} | {n / wall:.1f} | {per_request_ms:.1f} |")

    if servers is not None:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        servers.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
