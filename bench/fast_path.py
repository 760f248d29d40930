"""`make bench`: the fast path's figures in one table, every ratio from this one run.

    .venv/bin/python bench/fast_path.py [--base-url URL --token KEY --data-dir DIR]
        [--llama-server PATH] [--quick] [--skip NAME ...]

Without --base-url it starts the app itself (`sutazai run` on its own data folder,
.data/bench: embedded Postgres and Redis, the CPU model, HAProxy), with the per-role rate
limits lifted (a load test from one machine would otherwise measure the limiter), makes an
API key, runs each benchmark against it and stops it with SIGTERM at the end.

Each part is its own script that prints a table and, as its last line, a JSON object with
its figures; this script runs them one after another (never two at once: they share two
cores), keeps their tables in the log and puts one row per target in the summary, with the
peer each is measured against beside it:

  engine           bench/llama_server_peer.py: llama.cpp's own llama-server, same GGUF
                   (first: the machine is quietest before the load tests)
  ingress          bench/ingress.py --peer: the same ingress app under plain uvicorn
  mcp              bench/mcp_latency.py: a direct MCP ClientSession over stdio
  overload         here: a flood of the model deployment beyond its sized queue (aiohttp client)
  users            bench/thousand_users.py: 1,000 keep-alive clients, 1,000 idle SSE streams

The load generator each part used and the machine's load at the start are in the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
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
BENCH = ROOT / "bench"
LIFTED_LIMITS = json.dumps({"admin": 10_000_000, "user": 10_000_000, "viewer": 10_000_000})
# The app's limits, lifted; the uvicorn peer of the ingress part gets the same (it shares the
# app's Redis counters: with the default limits it would refuse what the app's run spent).
BENCH_LIMITS = {
    "SUTAZAI_RATE_LIMIT_REQUESTS_PER_MINUTE": LIFTED_LIMITS,
    "SUTAZAI_RATE_LIMIT_TOKENS_PER_MINUTE": LIFTED_LIMITS,
    "SUTAZAI_MAX_CONCURRENT_MODEL_REQUESTS": "100000",  # the model's own back-pressure answers
}


# ---- the app -------------------------------------------------------------------------------


def settle(below: float = 1.0, most_s: float = 120.0) -> float:
    """Waits until the 1-minute load average is under `below` (at most `most_s`): a freshly
    started app is still starting its actors and servers, and the first part measured (the
    engine, against a peer measured after it) would pay for that. Returns the seconds waited."""
    started = time.monotonic()
    while os.getloadavg()[0] >= below and time.monotonic() - started < most_s:
        time.sleep(2)
    return time.monotonic() - started


def start_app(data_dir: Path, port: int) -> tuple[subprocess.Popen, str]:
    env = os.environ | {
        "SUTAZAI_DATA_DIR": str(data_dir),
        "SUTAZAI_PORT": str(port),
        **BENCH_LIMITS,
    }
    for name in ("DATABASE_URL", "REDIS_URL", "RAY_ADDRESS"):  # the embedded default, as `make run`
        env.pop(name, None)
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir / "bench-app.log", "ab")  # noqa: SIM115  # closed with the process
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "sutazai"), "run"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, base, 600, f"the app (log: {data_dir / 'bench-app.log'})", poll_s=1)
    except SystemExit:
        stop_app(process)  # SIGTERM: `sutazai run` stops its Ray, HAProxy and databases too
        raise
    return process, base


def embedded_urls(data_dir: Path) -> tuple[str | None, str | None]:
    """The Postgres and Redis URLs the app printed when it came up (its embedded servers)."""
    database = redis = None
    for line in (data_dir / "bench-app.log").read_text(errors="replace").splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "Postgres":
            database = words[1]
        elif len(words) == 2 and words[0] == "Redis":
            redis = words[1]
    return database, redis


def stop_app(process: subprocess.Popen) -> float:
    started = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return time.perf_counter() - started


def api_key(base: str, data_dir: Path) -> str:
    password = (data_dir / "admin_password").read_text().strip()
    with httpx.Client(base_url=base, timeout=60) as client:
        login = client.post("/api/v1/auth/login", json={"username": "admin", "password": password})
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        created = client.post("/api/v1/auth/keys", json={"name": f"bench-{int(time.time())}"}, headers=headers)
        created.raise_for_status()
        return str(created.json()["key"])


def warm_up(base: str, token: str) -> None:
    """One completion, retried until the model answers (its replica may still be loading)."""
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 300
    model = httpx.get(f"{base}/api/v1/models", headers=headers, timeout=30).json()["items"][0]["name"]
    while True:
        body = {"prompt": "Hello", "max_tokens": 4, "model": model}
        response = httpx.post(f"{base}/v1/completions", json=body, headers=headers, timeout=120)
        if response.status_code == 200 or time.monotonic() > deadline:
            response.raise_for_status()
            return
        time.sleep(2)


# ---- the parts ------------------------------------------------------------------------------


def run_part(name: str, cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """A part's JSON figures (its last stdout line); its whole output goes to stderr for the log."""
    print(f"\n## {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=os.environ | (env or {})
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    sys.stderr.write(out.stdout + out.stderr[-4000:])
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not lines:
        return {"error": f"exit {out.returncode}: {out.stderr.strip().splitlines()[-1:] or ''}"}
    try:
        figures = json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"error": "no JSON figures on its last line"}
    figures["_seconds"] = round(time.perf_counter() - started, 1)
    return figures


async def overload(base: str, token: str, model: str, flood: int) -> dict[str, Any]:
    """`flood` generations at once (more than the sized deployment holds): how fast the excess
    is refused, and how long the accepted ones took. The client is aiohttp: httpx's connection
    pool is itself the bottleneck at ~100 requests at once (96 x GET /health: p50 541 ms with
    httpx on reused connections, 30-59 ms with aiohttp, same app)."""
    import aiohttp

    payload = {"prompt": "Once upon a time", "max_tokens": 16, "model": model}
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=flood)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(base, headers=headers, connector=connector, timeout=timeout) as client:
        seed = random.randrange(1 << 30)  # new to this run: no answer from the response cache

        async def one(i: int) -> tuple[int, float, str | None]:
            started = time.perf_counter()
            async with client.post("/v1/completions", json=payload | {"seed": seed + i}) as response:
                await response.read()
                return response.status, time.perf_counter() - started, response.headers.get("retry-after")

        answers = await asyncio.gather(*(one(i) for i in range(flood)))
    refused = sorted(took for status, took, _ in answers if status == 503)
    accepted = sorted(took for status, took, _ in answers if status == 200)
    return {
        "flood": flood,
        "accepted": len(accepted),
        "refused": len(refused),
        "other": sum(1 for status, _, _ in answers if status not in (200, 503)),
        "retry_after_on_every_503": all(ra for status, _, ra in answers if status == 503),
        "refusal_p50_ms": statistics.median(refused) * 1000 if refused else None,
        "refusal_p99_ms": refused[int(len(refused) * 0.99)] * 1000 if refused else None,
        "accepted_p50_s": statistics.median(accepted) if accepted else None,
        "accepted_max_s": accepted[-1] if accepted else None,
    }


# ---- the table ------------------------------------------------------------------------------


def _get(figures: dict[str, Any], *path: str) -> Any:
    value: Any = figures
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str, str, str]]:
    """(measure, SutazAI, peer, ratio, target, met) per target of issue 13."""
    out: list[tuple[str, str, str, str, str, str]] = []

    def add(
        label: str, mine: Any, theirs: Any, target: str, ok: bool | None, fmt: str = ".1f", ratio: Any = None
    ) -> None:
        def show(v: Any) -> str:
            return "-" if v is None else (f"{v:{fmt}}" if isinstance(v, int | float) else str(v))

        met = "-" if ok is None else ("yes" if ok else "NO")
        out.append((label, show(mine), show(theirs), "-" if ratio is None else f"{ratio:.2f}x", target, met))

    def ratio(a: Any, b: Any) -> float | None:
        return a / b if isinstance(a, int | float) and isinstance(b, int | float) and b else None

    for name, figures in results.items():
        if "error" in figures:
            add(f"{name}: not measured", figures["error"], None, "", False, "s")

    engine = results.get("engine", {})
    peer = "llama-server --no-repack" if "--no-repack" in str(engine.get("note")) else "llama-server"
    for label, key, target, better in (
        ("engine: 1 stream, 64 tokens (tok/s)", "single_tok_s", 0.95, "higher"),
        ("engine: 8 streams aggregate (tok/s)", "multi_tok_s", 1.0, "higher"),
        ("engine: TTFT p50 at 8 streams (s)", "multi_ttft_p50_s", 1.5, "lower"),
    ):
        mine, theirs = _get(engine, "sutazai", key), _get(engine, "llama_server", key)
        r = ratio(mine, theirs)
        ok = None if r is None else (r >= target if better == "higher" else r <= target)
        add(label, mine, theirs, f"{'>=' if better == 'higher' else '<='} {target}x {peer}", ok, ".2f", r)

    ingress = results.get("ingress", {})
    for label, route, target in (
        ("GET /health, 32 connections (req/s)", "/health", 0.5),
        ("authenticated GET /api/v1/models, 32 conn. (req/s)", "GET /api/v1/models (key)", 0.3),
    ):
        mine, theirs = _get(ingress, "app", route, "rps"), _get(ingress, "peer", route, "rps")
        r = ratio(mine, theirs)
        add(label, mine, theirs, f">= {target}x plain uvicorn", None if r is None else r >= target, ",.0f", r)
    mine = _get(ingress, "app", "idle", "GET /api/v1/models (key)")
    theirs = _get(ingress, "peer", "idle", "GET /api/v1/models (key)")
    added = mine - theirs if mine is not None and theirs is not None else None
    add(
        "idle added latency, authenticated route (ms)",
        added,
        theirs,
        "<= 2 ms over uvicorn",
        None if added is None else added <= 2,
        ".2f",
    )
    cached = _get(ingress, "app", "idle", "cached chat (key)")
    add(
        "cached chat p50, idle (ms)",
        cached,
        _get(ingress, "peer", "idle", "cached chat (key)"),
        "< 5 ms",
        None if cached is None else cached < 5,
        ".2f",
    )

    mcp = results.get("mcp", {})
    http, direct = _get(mcp, "http", "p50"), _get(mcp, "direct", "p50")
    above = http - direct if http is not None and direct is not None else None
    add(
        "MCP tool call over HTTP, p50 above a direct session (ms)",
        above,
        direct,
        "< 3 ms",
        None if above is None else above < 3,
        ".2f",
    )

    users = results.get("users", {})
    p95, errors = _get(users, "users", "p95_ms"), _get(users, "users", "errors")
    add("1,000 users, ~1 req/s each, 60 s: p95 (ms)", p95, None, "< 200 ms", None if p95 is None else p95 < 200, ".1f")
    add("1,000 users: errors", errors, None, "0", None if errors is None else errors == 0, "d")
    sse_errors, per_conn = _get(users, "sse", "errors"), _get(users, "sse", "kib_per_connection")
    add(
        "1,000 idle SSE streams, 30 s: errors",
        sse_errors,
        None,
        "0",
        None if sse_errors is None else sse_errors == 0,
        "d",
    )
    add("1,000 idle SSE streams: memory per connection (KiB)", per_conn, None, "reported", None, ".1f")

    flood = results.get("overload", {})
    p50 = flood.get("refusal_p50_ms")
    add(
        f"overload (aiohttp): {flood.get('flood', '?')} at once, {flood.get('refused', '?')} refused, "
        "p50 of a 503 (ms)",
        p50,
        None,
        "503 + Retry-After, p50 < 100 ms",
        None if p50 is None else (p50 < 100 and bool(flood.get("retry_after_on_every_503")) and not flood.get("other")),
        ".0f",
    )
    add("overload: slowest accepted request (s)", flood.get("accepted_max_s"), None, "reported", None, ".1f")
    return out


def render(table: list[tuple[str, ...]], header: str) -> str:
    lines = [header, "", "| measure | SutazAI | peer | ratio | target | met |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="a running app (default: start one)")
    parser.add_argument("--token", help="an API key of the running app (with --base-url)")
    parser.add_argument("--data-dir", default=str(ROOT / ".data" / "bench"))
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--llama-server", help="llama-server binary (default: .data/peers/llama-server-*)")
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test of the bench)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["ingress", "users", "mcp", "engine", "overload"])
    args = parser.parse_args()

    data_dir = Path(args.data_dir).expanduser().resolve()
    load = os.getloadavg()
    header = (
        f"machine: {os.cpu_count()} cores, load at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min); "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    process = None
    if args.base_url:
        if not args.token:
            parser.error("--token goes with --base-url")
        base, token = args.base_url, args.token
    else:
        started = time.perf_counter()
        process, base = start_app(data_dir, args.port)
        try:
            token = api_key(base, data_dir)
            warm_up(base, token)
        except BaseException:
            stop_app(process)
            raise
        header += f"; app started by this run in {time.perf_counter() - started:.0f} s"
        header += f"; waited {settle():.0f} s for the load to settle"

    from sutazai import cli
    from sutazai.settings import Settings

    settings = Settings(_env_file=None, data_dir=data_dir)
    ray_env = cli.head_env(settings) | {"RAY_ADDRESS": f"127.0.0.1:{settings.ray_port}"}
    py = sys.executable
    quick = args.quick
    results: dict[str, dict[str, Any]] = {}
    try:
        if "engine" not in args.skip and (BENCH / "llama_server_peer.py").exists():
            cmd = [py, str(BENCH / "llama_server_peer.py"), "--base-url", base, "--token", token]
            cmd += ["--llama-server", args.llama_server] if args.llama_server else []
            results["engine"] = run_part("engine", cmd, 1200)
        if "ingress" not in args.skip:
            cmd = [py, str(BENCH / "ingress.py"), "--base-url", base, "--token", token, "--peer"]
            cmd += ["--data-dir", str(data_dir), "--duration", "5" if quick else "10"]
            database_url, redis_url = embedded_urls(data_dir) if process else (None, None)
            database_url = database_url or os.environ.get("DATABASE_URL")
            redis_url = redis_url or os.environ.get("REDIS_URL")
            if database_url and redis_url:  # the peer needs the app's databases; without them, no peer
                cmd += ["--database-url", database_url, "--redis-url", redis_url]
            else:
                cmd.remove("--peer")
            results["ingress"] = run_part("ingress", cmd, 900, ray_env | BENCH_LIMITS)
        if "mcp" not in args.skip:
            cmd = [py, str(BENCH / "mcp_latency.py"), "--base-url", base, "--token", token]
            cmd += ["--ray-address", ray_env["RAY_ADDRESS"], "--calls", "100" if quick else "300"]
            cmd += ["--batch", "200" if quick else "1000"]
            results["mcp"] = run_part("mcp", cmd, 600, ray_env)
        if "overload" not in args.skip:
            models = httpx.get(f"{base}/api/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=30)
            model = models.json()["items"][0]["name"]
            print("\n## overload", file=sys.stderr, flush=True)
            results["overload"] = asyncio.run(overload(base, token, model, flood=48 if quick else 96))
            print(json.dumps(results["overload"]), file=sys.stderr, flush=True)
        if "users" not in args.skip and (BENCH / "thousand_users.py").exists():
            cmd = [py, str(BENCH / "thousand_users.py"), "--base-url", base, "--token", token]
            cmd += ["--data-dir", str(data_dir)] + (["--quick"] if quick else [])
            results["users"] = run_part("users", cmd, 900, ray_env)
    finally:
        if process is not None:
            took = stop_app(process)
            header += f"; stopped by SIGTERM in {took:.1f} s"
    print(render(rows(results), header))
    print(json.dumps({"header": header} | results))


if __name__ == "__main__":
    main()
