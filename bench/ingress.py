"""The ingress fast path: a running app against the same FastAPI app under plain uvicorn.

    python bench/ingress.py --base-url http://127.0.0.1:8000 --token sk-... \
        [--peer --data-dir ~/.local/share/sutazai --database-url ... --redis-url ...]

Measures, on the running app (`sutazai run`: Serve + HAProxy):
  * req/s, p50, p99 at `--connections` (32) for GET /health and GET /api/v1/models with
    the API key (`--token`);
  * idle p50 (one request at a time) of /health, /api/v1/models and a cached chat
    (POST /v1/chat/completions, temperature 0: the second and later are cache hits).

`--peer` also serves the same app (`sutazai.api.app.create_app` on `build_services`, same
Postgres, Redis, JWT secret and the running cluster's model handles) under plain uvicorn
in a subprocess at the niceness of Ray's workers (settings.worker_niceness), and
measures the same routes there, for the ratio column.

Load comes from autocannon when it is found (`--autocannon`, bench/node_modules where
`make bench` installs the version bench/package.json pins, $PATH, or `npx --no-install`), else from an async httpx load
generator in this process (which tops out near 1,500 req/s on one core: it then measures
itself, not the server). The table says which.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from serving import wait_healthy  # bench/serving.py: scripts here run from bench/

ROOT = Path(__file__).resolve().parent.parent
CHAT = {
    "messages": [{"role": "user", "content": "What is 2+2?"}],
    "max_tokens": 8,
    "temperature": 0,
}


# ---- load ------------------------------------------------------------------------


def find_autocannon(given: str | None) -> list[str] | None:
    if given:
        return [given]
    for candidate in (
        str(ROOT / "bench/node_modules/.bin/autocannon"),  # `make bench` installs it here (bench/package.json)
        shutil.which("autocannon"),
        str(ROOT / "node_modules/.bin/autocannon"),
    ):
        if candidate and Path(candidate).exists():
            return [candidate]
    if shutil.which("npx"):
        probe = subprocess.run(["npx", "--no-install", "autocannon", "--version"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return ["npx", "--no-install", "autocannon"]
    return None


def autocannon_load(
    cmd: list[str], url: str, headers: dict[str, str], connections: int, duration: int
) -> dict[str, float]:
    args = [*cmd, "-j", "-c", str(connections), "-d", str(duration)]
    for name, value in headers.items():
        args += ["-H", f"{name}={value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=duration + 60)
    report = json.loads(out.stdout)
    ok = report["2xx"]
    return {
        "rps": ok / report["duration"] if report["duration"] else 0.0,
        "p50": float(report["latency"]["p50"]),
        "p99": float(report["latency"]["p99"]),
        "errors": report["non2xx"] + report["errors"] + report["timeouts"],
    }


async def httpx_load(url: str, headers: dict[str, str], connections: int, duration: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.get(url)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        took = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / took,
        "p50": latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99": latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
        "errors": errors,
    }


def idle_p50(base: str, method: str, path: str, headers: dict[str, str], n: int, body: Any = None) -> float:
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for _ in range(5):
            client.request(method, path, json=body).raise_for_status()
        times = []
        for _ in range(n):
            started = time.perf_counter()
            client.request(method, path, json=body).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(base: str, token: str, args: argparse.Namespace, cannon: list[str] | None) -> dict[str, dict[str, float]]:
    auth = {"Authorization": f"Bearer {token}"}
    results: dict[str, dict[str, float]] = {}
    for name, path, headers in (("/health", "/health", {}), ("GET /api/v1/models (key)", "/api/v1/models", auth)):
        if cannon:
            results[name] = autocannon_load(cannon, base + path, headers, args.connections, args.duration)
        else:
            results[name] = asyncio.run(httpx_load(base + path, headers, args.connections, args.duration))
        time.sleep(1)
    model = httpx.get(f"{base}/api/v1/models", headers=auth, timeout=30).json()["items"][0]["name"]
    chat = CHAT | {"model": model}
    print(f"{base}: {json.dumps(results)}", file=sys.stderr, flush=True)
    results["idle"] = {
        "/health": idle_p50(base, "GET", "/health", {}, args.idle_n),
        "GET /api/v1/models (key)": idle_p50(base, "GET", "/api/v1/models", auth, args.idle_n),
        "cached chat (key)": idle_p50(base, "POST", "/v1/chat/completions", auth, args.idle_n, chat),
    }
    return results


# ---- the plain-uvicorn peer ---------------------------------------------------------


def serve_peer(port: int) -> None:
    """Runs in the peer subprocess: the app of one ingress replica, under plain uvicorn, at the
    niceness `sutazai run` starts Ray's workers at (settings.worker_niceness): like with like."""
    from sutazai.settings import get_settings as _settings

    os.nice(_settings().worker_niceness)
    import ray
    import uvicorn
    from ray import serve

    from sutazai.api.app import create_app
    from sutazai.catalog import ModelCatalog
    from sutazai.services import build_services
    from sutazai.settings import get_settings

    settings = get_settings()
    settings.mcp_enabled = False
    catalog = ModelCatalog.load(settings.models_dir)
    ray.init(address=os.environ["RAY_ADDRESS"], logging_level="ERROR", log_to_driver=False)
    handles = {
        name: serve.get_deployment_handle(spec.deployment_name, settings.app_name)
        for name, spec in catalog.specs.items()
    }

    async def main() -> None:
        services = await build_services(settings, catalog, handles)
        config = uvicorn.Config(
            create_app(services), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
        await uvicorn.Server(config).serve()

    asyncio.run(main())


def start_peer(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    from sutazai import cli
    from sutazai.settings import Settings

    settings = Settings(_env_file=None, data_dir=Path(args.data_dir).expanduser())
    env = os.environ | cli.replica_env(settings, args.database_url, args.redis_url) | cli.head_env(settings)
    env |= {"RAY_ADDRESS": args.ray_address, "SUTAZAI_DATA_DIR": str(settings.data_dir)}
    port = cli._free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve-peer", str(port)], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(process, base, 120, "the uvicorn peer")
    return process, base


# ---- report ------------------------------------------------------------------------------


def table(app: dict[str, dict[str, float]], peer: dict[str, dict[str, float]] | None, load: str) -> str:
    lines = [
        f"load: {load}",
        "| measure | app | plain uvicorn | app / peer |",
        "|---|---|---|---|",
    ]

    def row(label: str, mine: float, theirs: float | None, fmt: str, invert: bool = False) -> None:
        if theirs is None:
            lines.append(f"| {label} | {mine:{fmt}} | - | - |")
            return
        ratio = (theirs / mine if invert else mine / theirs) if mine and theirs else float("nan")
        lines.append(f"| {label} | {mine:{fmt}} | {theirs:{fmt}} | {ratio:.2f}x |")

    for route in ("/health", "GET /api/v1/models (key)"):
        a, p = app[route], (peer or {}).get(route)
        row(f"{route} req/s", a["rps"], p["rps"] if p else None, ",.0f")
        row(f"{route} p50 ms", a["p50"], p["p50"] if p else None, ".1f", invert=True)
        row(f"{route} p99 ms", a["p99"], p["p99"] if p else None, ".1f", invert=True)
        if a["errors"] or (p and p["errors"]):
            lines.append(f"| {route} errors | {a['errors']:.0f} | {p['errors'] if p else '-'} | |")
    for route, ms in app["idle"].items():
        theirs = peer["idle"][route] if peer else None
        extra = f" (+{ms - theirs:.1f} ms)" if theirs is not None else ""
        row(f"idle p50 ms {route}{extra}", ms, theirs, ".2f", invert=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", help="an API key (sk-...) of a user")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--idle-n", type=int, default=200)
    parser.add_argument("--autocannon", help="path to autocannon (default: found, else httpx)")
    parser.add_argument("--httpx", action="store_true", help="use the httpx load generator even if autocannon is here")
    parser.add_argument("--peer", action="store_true", help="also measure the app under plain uvicorn")
    parser.add_argument("--data-dir", default=os.environ.get("SUTAZAI_DATA_DIR", "~/.local/share/sutazai"))
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS", "127.0.0.1:6390"))
    parser.add_argument("--serve-peer", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_peer:
        serve_peer(args.serve_peer)
        return
    if not args.token:
        parser.error("--token is required")
    cannon = None if args.httpx else find_autocannon(args.autocannon)
    load = f"autocannon ({' '.join(cannon)})" if cannon else "httpx (async, in this process)"
    app = measure(args.base_url, args.token, args, cannon)
    peer = None
    if args.peer:
        process, base = start_peer(args)
        try:
            peer = measure(base, args.token, args, cannon)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    print(table(app, peer, load))
    print(json.dumps({"app": app, "peer": peer, "load": load}))


if __name__ == "__main__":
    main()
