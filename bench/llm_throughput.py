"""Tokens/s of the CPU model: engine in-process vs through HTTP SSE (ingress -> model
deployment), single stream and 1/4/8 concurrent streams. Prints a table.

    .venv/bin/python bench/llm_throughput.py [--base-url http://127.0.0.1:8000] [--max-tokens 64]

Without --base-url it starts Ray and the Serve app itself (like the tests), with
DATABASE_URL / REDIS_URL when set and embedded servers otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from sutazai.catalog import ModelCatalog
from sutazai.settings import PROJECT_ROOT, Settings

PROMPT = "Once upon a time, in a small village by the sea,"
CONCURRENCY = (1, 4, 8)


async def engine_run(engine, max_tokens: int, streams: int, seed0: int) -> tuple[int, float, list[float]]:
    from sutazai.schemas.engine import GenerationRequest

    async def one(i: int) -> tuple[int, float]:
        started = time.perf_counter()
        ttft, tokens = None, 0
        request = GenerationRequest(prompt=PROMPT, max_tokens=max_tokens, temperature=0.8, top_p=0.95, seed=seed0 + i)
        async for chunk in engine.stream(request):
            if chunk.text and ttft is None:
                ttft = time.perf_counter() - started
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        return tokens, ttft or 0.0

    started = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(streams)))
    return sum(r[0] for r in results), time.perf_counter() - started, [r[1] for r in results]


async def http_run(
    base_url: str, token: str, model: str, max_tokens: int, streams: int, seed0: int
) -> tuple[int, float, list[float]]:
    async def one(client: httpx.AsyncClient, i: int) -> tuple[int, float]:
        body = {
            "model": model,
            "prompt": PROMPT,
            "max_tokens": max_tokens,
            "temperature": 0.8,
            "seed": seed0 + i,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        started = time.perf_counter()
        ttft, tokens = None, 0
        async with client.stream("POST", "/v1/completions", json=body) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if data.get("choices") and data["choices"][0]["text"] and ttft is None:
                    ttft = time.perf_counter() - started
                if data.get("usage"):
                    tokens = data["usage"]["completion_tokens"]
        return tokens, ttft or 0.0

    async with httpx.AsyncClient(
        base_url=base_url, timeout=300, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(one(client, i) for i in range(streams)))
    return sum(r[0] for r in results), time.perf_counter() - started, [r[1] for r in results]


def start_app() -> tuple[str, str, object]:
    """Ray + the app as the tests start it; returns (base URL, an admin token, servers)."""
    import ray
    from ray import serve

    from deployments.app import build_app
    from sutazai.embedded import start_missing

    data_dir = Path(tempfile.mkdtemp(prefix="sutazai-bench-"))
    servers = start_missing(data_dir, os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL"))
    import json
    import secrets

    admin_password = secrets.token_urlsafe(16)
    unlimited = json.dumps({"admin": 10**9, "user": 10**9, "viewer": 10**9})
    env = {
        "DATABASE_URL": servers.database_url,
        "REDIS_URL": servers.redis_url,
        "SUTAZAI_DATA_DIR": str(data_dir),
        "SUTAZAI_MCP_ENABLED": "false",
        "SUTAZAI_CACHE_ENABLED": "false",
        "SUTAZAI_JWT_SECRET": secrets.token_urlsafe(48),
        "SUTAZAI_ADMIN_USERNAME": f"bench-{secrets.token_hex(4)}",
        "SUTAZAI_ADMIN_PASSWORD": admin_password,
        "SUTAZAI_RATE_LIMIT_REQUESTS_PER_MINUTE": unlimited,
        "SUTAZAI_RATE_LIMIT_TOKENS_PER_MINUTE": unlimited,
    }
    os.environ.update(env)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    port = 8123
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"env": env}), name="sutazai", route_prefix="/")
    base_url = f"http://127.0.0.1:{port}"
    r = httpx.post(
        f"{base_url}/api/v1/auth/login",
        timeout=30,
        json={"username": env["SUTAZAI_ADMIN_USERNAME"], "password": admin_password},
    )
    r.raise_for_status()
    return base_url, r.json()["access_token"], servers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", help="a running app (then --token is needed)")
    parser.add_argument("--token", help="bearer token or API key for --base-url")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--model", default="gemma3-270m")
    args = parser.parse_args()

    spec = ModelCatalog.load(PROJECT_ROOT / "models").get(args.model)
    rows = []

    # 1) engine in-process (same slots as the deployment), then released before Serve starts
    from sutazai.engines.llama_cpp import LlamaCppEngine
    from sutazai.engines.model_files import resolve_model_path

    engine = LlamaCppEngine(spec, resolve_model_path(spec, Settings().data_dir))

    async def engine_phase() -> None:  # one event loop: the engine's slot queue lives in it
        await engine_run(engine, 8, 1, 0)  # warm-up
        for streams in CONCURRENCY:
            tokens, wall, ttfts = await engine_run(engine, args.max_tokens, streams, 100)
            rows.append(("engine in-process", streams, tokens, wall, statistics.median(ttfts)))

    asyncio.run(engine_phase())
    engine.close()

    # 2) through HTTP SSE: proxy -> ingress -> model deployment
    servers = None
    base_url, token = args.base_url, args.token
    if base_url is None:
        base_url, token, servers = start_app()
    asyncio.run(http_run(base_url, token, args.model, 8, 1, 0))  # warm-up
    for streams in CONCURRENCY:
        tokens, wall, ttfts = asyncio.run(http_run(base_url, token, args.model, args.max_tokens, streams, 100))
        rows.append(("HTTP SSE via Serve", streams, tokens, wall, statistics.median(ttfts)))

    print(
        f"\nmodel {args.model}, prompt {len(PROMPT)} chars, max_tokens {args.max_tokens}, "
        f"slots/replica {spec.cpu.slots}, threads/slot {spec.cpu.threads_per_slot}, {os.cpu_count()} cores\n"
    )
    print("| path | streams | tokens | wall s | aggregate tok/s | per-stream tok/s | median TTFT ms |")
    print("|---|---|---|---|---|---|---|")
    for path, streams, tokens, wall, ttft in rows:
        print(
            f"| {path} | {streams} | {tokens} | {wall:.2f} | {tokens / wall:.1f} | {tokens / wall / streams:.1f} "
            f"| {ttft * 1000:.0f} |"
        )
    single = {path: tokens / wall for path, streams, tokens, wall, _ in rows if streams == 1}
    print(f"\nsingle stream, HTTP SSE / in-process: {single['HTTP SSE via Serve'] / single['engine in-process']:.2f}")

    if servers is not None:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        servers.stop()


if __name__ == "__main__":
    main()
