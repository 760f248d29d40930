"""MCP tool-call latency and throughput: what the gateway -> actor -> stdio path costs.

Compares, for one tool of one configured server (default: time/get_current_time):
  direct   one in-process mcp ClientSession over stdio (the floor)
  gateway  MCPGateway -> named Ray actor -> its ClientSession -> stdio
  http     POST /api/v1/mcp/execute on a running app (only with --base-url)

Sequential calls give p50/p99 latency; a bounded batch with N workers gives calls/s.
Loopback only. Without --ray-address a private local Ray is started (namespace
"sutazai-bench"); with it, the deployment's own actors (namespace "sutazai") are used.

    .venv/bin/python bench/mcp_latency.py [--calls 300] [--batch 1000] [--workers 32]
        [--base-url http://127.0.0.1:8000 --token TOKEN] [--ray-address auto]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(call, calls: int, batch: int, workers: int) -> dict:
    """p50/p99 of `calls` sequential calls (after a warm-up), then calls/s of `batch` calls by `workers`."""
    for _ in range(min(20, calls)):
        await call()
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - started) * 1000)
    remaining = batch

    async def worker():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - started
    return {
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "rate": batch / elapsed,
    }


async def bench_direct(settings, server: str, tool: str, arguments: dict, args) -> dict:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from sutazai.mcp.config import expand_server, load_config, local_placeholders, shared_placeholders

    config = load_config(settings.mcp_config)
    entry = expand_server(
        config.mcp_servers[server],
        {**local_placeholders(), **shared_placeholders(settings.data_dir, config.config_dir)},
    )
    for folder in entry.ensure_dirs:
        Path(folder).mkdir(parents=True, exist_ok=True)
    params = StdioServerParameters(command=entry.command, args=entry.args, env=entry.env, cwd=entry.cwd)
    with open(os.devnull, "w") as quiet:
        async with stdio_client(params, errlog=quiet) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await session.list_tools()

            async def call():
                result = await session.call_tool(tool, arguments)
                assert not result.is_error, result

            return await measure(call, args.calls, args.batch, args.workers)


async def bench_gateway(settings, server: str, tool: str, arguments: dict, args) -> dict:
    import ray

    from deployments.mcp_process import connect_gateway

    if args.ray_address:
        ray.init(address=args.ray_address, log_to_driver=False, logging_level="WARNING")
        namespace = "sutazai"
    else:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        namespace = "sutazai-bench"
    gateway = await connect_gateway(settings, namespace=namespace)
    try:
        await gateway.wait_ready(timeout=60)

        async def call():
            result = await gateway.execute(server, tool, arguments, "admin")
            assert not result["is_error"], result

        return await measure(call, args.calls, args.batch, args.workers)
    finally:
        if not args.ray_address:
            await gateway.shutdown()
        ray.shutdown()


async def bench_http(server: str, tool: str, arguments: dict, args) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    limits = httpx.Limits(max_connections=args.workers, max_keepalive_connections=args.workers)
    async with httpx.AsyncClient(base_url=args.base_url, headers=headers, limits=limits, timeout=60) as client:
        body = {"server": server, "tool": tool, "arguments": arguments}

        async def call():
            response = await client.post("/api/v1/mcp/execute", json=body)
            response.raise_for_status()
            assert not response.json()["is_error"], response.text

        return await measure(call, args.calls, args.batch, args.workers)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="time")
    parser.add_argument("--tool", default="get_current_time")
    parser.add_argument("--arguments", default='{"timezone": "UTC"}', help="JSON object")
    parser.add_argument("--calls", type=int, default=300, help="sequential calls for p50/p99")
    parser.add_argument("--batch", type=int, default=1000, help="calls in the throughput run")
    parser.add_argument("--workers", type=int, default=32, help="concurrent callers in the throughput run")
    parser.add_argument("--base-url", help="also measure HTTP POST /api/v1/mcp/execute on this app")
    parser.add_argument("--token", help="bearer token for --base-url")
    parser.add_argument("--ray-address", help="use a running cluster's MCP actors instead of a private Ray")
    args = parser.parse_args()

    from sutazai.settings import get_settings

    settings = get_settings()
    arguments = json.loads(args.arguments)
    figures = {"direct": await bench_direct(settings, args.server, args.tool, arguments, args)}
    rows = [("direct ClientSession (1 process)", figures["direct"])]
    figures["gateway"] = await bench_gateway(settings, args.server, args.tool, arguments, args)
    rows.append(("gateway -> Ray actor -> stdio", figures["gateway"]))
    if args.base_url:
        figures["http"] = await bench_http(args.server, args.tool, arguments, args)
        rows.append((f"HTTP {args.base_url}/api/v1/mcp/execute", figures["http"]))

    print(f"\n{args.server}/{args.tool}: {args.calls} sequential calls, {args.batch} calls by {args.workers} workers\n")
    print(f"| {'path':<40} | {'p50 ms':>7} | {'p99 ms':>7} | {'calls/s':>8} |")
    print(f"|{'-' * 42}|{'-' * 9}|{'-' * 9}|{'-' * 10}|")
    for name, r in rows:
        print(f"| {name:<40} | {r['p50']:>7.2f} | {r['p99']:>7.2f} | {r['rate']:>8.0f} |")
    print(json.dumps({"tool": f"{args.server}/{args.tool}"} | figures))  # last line: for bench/fast_path.py


if __name__ == "__main__":
    asyncio.run(main())
