"""1,000 users against a running app: keep-alive clients at ~1 request/s each, then idle SSE streams.

    python bench/thousand_users.py --base-url http://127.0.0.1:8000 --data-dir DIR [--token sk-...]
        [--clients 1000 --rate 1 --duration 60] [--streams 1000 --hold 30] [--users N] [--quick]

Part 1, users: `--clients` keep-alive connections, each sending GET /api/v1/models with an
API key `--rate` times a second for `--duration` s (autocannon's --connectionRate: a
connection waits for its answer before the next request, so a slow answer delays the next
one; every connection starts at a random phase). p50/p95/p99 come from every response's
latency (autocannon's own summary has no p95); errors are non-2xx answers, timeouts and
socket errors.

Rate limits: GET /api/v1/models counts against the caller's per-user limit (120/min for role
user by default). `--token`'s X-RateLimit-Limit says whether one user can carry the load
(a run with lifted limits, as `make bench` starts it). When it cannot, the bench makes users
through the API as the admin (`<data-dir>/admin_password`), logs each in once and makes it an
API key, enough that each user sends at most half its limit; they are kept in
`<data-dir>/bench-users.json` for the next run. Logins are limited per address (the app
started with a higher SUTAZAI_LOGIN_ATTEMPTS_PER_MINUTE makes the first run fast; otherwise
the bench waits out each 429's Retry-After).

Part 2, SSE: `--streams` connections each following a task's events
(GET /api/v1/tasks/{id}/events) for `--hold` s. The tasks are submitted to the `--agent`
first; a stream that ends before the hold (its task ended) is counted as `ended`, one that
fails as an error. Memory per connection: the RSS of the ingress replicas and HAProxy,
during the hold minus before, divided by the streams held.

Prints a Markdown table, then, as the last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
ROUTE = "/api/v1/models"

# Runs in node: autocannon with one API key per connection, every latency reported.
LOAD_JS = r"""
const autocannon = require(process.argv[1]);
const cfg = JSON.parse(require('fs').readFileSync(0, 'utf8'));
let next = 0;
const latencies = [];
const statuses = {};
const instance = autocannon({
  url: cfg.url,
  connections: cfg.connections,
  connectionRate: cfg.rate,
  duration: cfg.duration,
  timeout: cfg.timeout,
  requests: [{
    method: 'GET',
    setupRequest: (req, context) => {
      if (context.key === undefined) context.key = cfg.keys[next++ % cfg.keys.length];
      req.headers = Object.assign({}, req.headers, {authorization: 'Bearer ' + context.key});
      return req;
    },
  }],
}, (err, result) => {
  if (err) { console.error(err); process.exit(1); }
  latencies.sort((a, b) => a - b);
  const n = latencies.length;
  const q = (p) => n ? latencies[Math.min(n - 1, Math.floor(n * p))] : null;
  console.log(JSON.stringify({
    requests: latencies.length, statuses, duration: result.duration,
    errors: result.errors, timeouts: result.timeouts, non2xx: result.non2xx,
    resets: result.resets || 0,
    p50: q(0.5), p95: q(0.95), p99: q(0.99), max: latencies.length ? latencies[latencies.length - 1] : null,
  }));
});
instance.on('response', (client, statusCode, resBytes, responseTime) => {
  latencies.push(responseTime);
  statuses[statusCode] = (statuses[statusCode] || 0) + 1;
});
"""


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# ---- credentials ----------------------------------------------------------------------


def rate_limit_of(base: str, token: str) -> int | None:
    response = httpx.get(base + ROUTE, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    response.raise_for_status()
    value = response.headers.get("x-ratelimit-limit")
    return int(value) if value else None


def _retrying(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    while True:
        response = client.request(method, path, **kwargs)
        if response.status_code != 429:
            return response
        time.sleep(float(response.headers.get("retry-after", "1")))


def bench_users(base: str, data_dir: Path, count: int) -> list[str]:
    """`count` users of role user with one API key each, made through the API (kept for reruns)."""
    store = data_dir / "bench-users.json"
    keys: list[str] = json.loads(store.read_text()) if store.exists() else []
    if len(keys) >= count:
        return keys[:count]
    password = (data_dir / "admin_password").read_text().strip()
    user_password = "bench-" + os.urandom(8).hex() + "-Pw1!"
    started = time.perf_counter()
    with httpx.Client(base_url=base, timeout=60) as client:
        login = _retrying(client, "POST", "/api/v1/auth/login", json={"username": "admin", "password": password})
        login.raise_for_status()
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        run = os.urandom(3).hex()
        for i in range(len(keys), count):
            name = f"bench-{run}-{i}"
            created = _retrying(
                client, "POST", "/api/v1/users", headers=admin,
                json={"username": name, "password": user_password, "role": "user"},
            )  # fmt: skip
            created.raise_for_status()
            token = _retrying(client, "POST", "/api/v1/auth/login", json={"username": name, "password": user_password})
            token.raise_for_status()
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            key = _retrying(client, "POST", "/api/v1/auth/keys", headers=headers, json={"name": "bench"})
            key.raise_for_status()
            keys.append(str(key.json()["key"]))
            if i % 50 == 49:
                store.write_text(json.dumps(keys))
                print(f"users: {i + 1}/{count} made ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    store.write_text(json.dumps(keys))
    store.chmod(0o600)
    return keys


# ---- part 1: keep-alive clients ------------------------------------------------------------


def find_autocannon_module() -> Path:
    for candidate in (ROOT / "bench" / "node_modules" / "autocannon", ROOT / "node_modules" / "autocannon"):
        if (candidate / "package.json").exists():
            return candidate
    raise SystemExit("autocannon not found: `npm ci` in bench/ (bench/package.json pins it)")


def users_part(base: str, keys: list[str], args: argparse.Namespace) -> dict[str, Any]:
    module = find_autocannon_module()
    node = shutil.which("node") or "node"
    cfg = {
        "url": base + ROUTE,
        "connections": args.clients,
        "rate": args.rate,
        "duration": args.duration,
        "timeout": 10,
        "keys": keys,
    }
    load = load_line()
    out = subprocess.run(
        [node, "-e", LOAD_JS, str(module)],
        input=json.dumps(cfg),
        capture_output=True,
        text=True,
        timeout=args.duration + 120,
    )
    if out.returncode != 0:
        raise SystemExit(f"autocannon failed: {out.stderr[-2000:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    ok = sum(n for status, n in report["statuses"].items() if status.startswith("2"))
    return {
        "clients": args.clients,
        "rate_per_client": args.rate,
        "duration_s": args.duration,
        "users": len(set(keys)),
        "requests": report["requests"],
        "rps": ok / report["duration"] if report["duration"] else 0.0,
        "p50_ms": report["p50"],
        "p95_ms": report["p95"],
        "p99_ms": report["p99"],
        "max_ms": report["max"],
        "non2xx": report["non2xx"],
        "timeouts": report["timeouts"],
        "socket_errors": report["errors"],
        "resets": report["resets"],
        "statuses": report["statuses"],
        "errors": report["non2xx"] + report["timeouts"] + report["errors"],
        "load": load,
    }


# ---- part 2: idle SSE streams ----------------------------------------------------------------


def serving_rss() -> tuple[int, int]:
    """RSS in bytes of the ingress replicas and of HAProxy, on this machine."""
    ingress = haproxy = 0
    for process in psutil.process_iter(["name", "cmdline", "memory_info"]):
        args = " ".join(process.info["cmdline"] or [])
        rss = process.info["memory_info"].rss if process.info["memory_info"] else 0
        if "ServeReplica" in args and ":ingress" in args:
            ingress += rss
        elif "haproxy" in (process.info["name"] or "") or (args.split(" ")[0].endswith("haproxy")):
            haproxy += rss
    return ingress, haproxy


async def sse_part(base: str, keys: list[str], args: argparse.Namespace) -> dict[str, Any]:
    # A task's events are its owner's: each owner submits one task and opens its share of the
    # streams (at most `--streams-per-user`, under the 120/min of role user), one key carrying
    # them all when the limits are lifted.
    # One task per `--streams-per-user` streams even when one key carries them all: a lone task
    # of a fast agent can end before the hold, and its streams with it.
    tasks_needed = max(1, math.ceil(args.streams / args.streams_per_user))
    owners = keys[:tasks_needed] if len(keys) > 1 else keys * tasks_needed
    limits = httpx.Limits(max_connections=args.streams + 10, max_keepalive_connections=args.streams + 10)
    timeout = httpx.Timeout(args.hold + 60, connect=30)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:
        task_ids = []  # (task id, its owner's headers)
        for i, key in enumerate(owners):
            headers = {"Authorization": f"Bearer {key}"}
            body = {"input": f"Count slowly from 1 to 500, one number per line. ({i})"}
            response = await client.post(f"/api/v1/agents/{args.agent}/run", json=body, headers=headers)
            response.raise_for_status()
            task_ids.append((response.json()["id"], headers))
        await asyncio.sleep(1)
        before = serving_rss()
        opened = asyncio.Event()
        counts = {"open": 0, "held": 0, "ended": 0, "errors": 0, "now_open": 0}
        error_kinds: dict[str, int] = {}
        held: set[int] = set()
        deadline = time.monotonic() + args.hold + args.streams / 200  # opening takes a while too

        async def stream(i: int) -> None:
            await asyncio.sleep(random.random() * args.streams / 200)  # ~200 opens/s
            is_open = ended = False
            try:
                task_id, headers = task_ids[i % len(task_ids)]
                async with client.stream("GET", f"/api/v1/tasks/{task_id}/events", headers=headers) as response:
                    if response.status_code != 200:
                        raise RuntimeError(f"HTTP {response.status_code}")
                    counts["open"] += 1
                    counts["now_open"] += 1
                    is_open = True
                    if counts["open"] == args.streams:
                        opened.set()
                    async for line in response.aiter_lines():
                        if line.startswith("event: end"):
                            counts["ended"] += 1
                            ended = True
                            return
                        if time.monotonic() >= deadline:
                            break
            except Exception as exc:  # every failure counts, by kind
                counts["errors"] += 1
                kind = type(exc).__name__ if not isinstance(exc, RuntimeError) else str(exc)
                error_kinds[kind] = error_kinds.get(kind, 0) + 1
            finally:
                if is_open:
                    counts["now_open"] -= 1
                    if not ended:  # open until the deadline (or cancelled at it): held
                        held.add(i)

        async def held_until_deadline(tasks: list[asyncio.Task[None]]) -> None:
            # A stream idles between events: end them at the deadline whatever arrives.
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            for t in tasks:
                if not t.done():
                    t.cancel()

        load = load_line()
        tasks = [asyncio.create_task(stream(i)) for i in range(args.streams)]
        with_deadline = asyncio.create_task(held_until_deadline(tasks))
        try:
            await asyncio.wait_for(opened.wait(), timeout=args.hold)
        except TimeoutError:
            pass
        await asyncio.sleep(min(5.0, args.hold / 3))
        during = serving_rss()
        open_at_sample = counts["now_open"]
        await asyncio.gather(*tasks, return_exceptions=True)
        with_deadline.cancel()
        counts["held"] = len(held)
        for task_id, headers in task_ids:
            await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=headers)
    grown = (during[0] - before[0]) + (during[1] - before[1])
    return {
        "streams": args.streams,
        "hold_s": args.hold,
        "tasks": len(task_ids),
        "opened": counts["open"],
        "held": counts["held"],
        "ended": counts["ended"],
        "errors": counts["errors"],
        "error_kinds": error_kinds,
        "open_at_sample": open_at_sample,
        "rss_before_mib": {"ingress": before[0] / 2**20, "haproxy": before[1] / 2**20},
        "rss_during_mib": {"ingress": during[0] / 2**20, "haproxy": during[1] / 2**20},
        "kib_per_connection": grown / 1024 / open_at_sample if open_at_sample > 0 else None,
        "load": load,
    }


# ---- report ------------------------------------------------------------------------------------


def table(users: dict[str, Any] | None, sse: dict[str, Any] | None) -> str:
    lines = [f"load at the end: {load_line()} (1/5/15 min), {os.cpu_count()} cores", ""]
    if users:
        met = users["p95_ms"] is not None and users["p95_ms"] < 200 and not users["errors"]
        lines += [
            f"1. {users['clients']} keep-alive clients x {users['rate_per_client']} req/s, {users['duration_s']} s, "
            f"GET {ROUTE} with {users['users']} users' API keys (autocannon; load at start {users['load']})",
            "",
            "| req/s | p50 ms | p95 ms | p99 ms | max ms | non-2xx | timeouts | socket errors | target |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {users['rps']:,.0f} | {users['p50_ms']:.1f} | {users['p95_ms']:.1f} | {users['p99_ms']:.1f} "
            f"| {users['max_ms']:.0f} "
            f"| {users['non2xx']} | {users['timeouts']} | {users['socket_errors']} | p95 < 200 ms, 0 errors: "
            f"{'met' if met else 'NOT met'} |",
            "",
        ]
    if sse:
        per = sse["kib_per_connection"]
        b, d = sse["rss_before_mib"], sse["rss_during_mib"]
        lines += [
            f"2. {sse['streams']} idle SSE streams (GET /api/v1/tasks/{{id}}/events, {sse['tasks']} users' tasks), "
            f"held {sse['hold_s']} s (load at start {sse['load']})",
            "",
            "| opened | held | ended early | errors | RSS ingress before/during MiB | RSS HAProxy before/during MiB "
            "| KiB per connection |",
            "|---|---|---|---|---|---|---|",
            f"| {sse['opened']} | {sse['held']} | {sse['ended']} | {sse['errors']} {sse['error_kinds'] or ''} "
            f"| {b['ingress']:.0f} / {d['ingress']:.0f} | {b['haproxy']:.0f} / {d['haproxy']:.0f} "
            f"| {'-' if per is None else f'{per:.1f}'} |",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", help="an API key; with lifted limits it carries every client")
    parser.add_argument("--data-dir", default=os.environ.get("SUTAZAI_DATA_DIR", str(ROOT / ".data")))
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1.0, help="requests per second per client")
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--users", type=int, help="users to spread the clients over (default: from the limit)")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--hold", type=int, default=30)
    parser.add_argument("--streams-per-user", type=int, default=100, help="with several users' keys")
    parser.add_argument("--agent", default="assistant")
    parser.add_argument("--skip", nargs="*", default=[], choices=["users", "sse"])
    parser.add_argument("--quick", action="store_true", help="200 clients for 15 s, 200 streams for 10 s")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.duration, args.streams, args.hold = 200, 15, 200, 10
    base = args.base_url.rstrip("/")
    data_dir = Path(args.data_dir).expanduser()

    per_user_wanted = args.rate * 60 * args.clients
    limit = rate_limit_of(base, args.token) if args.token else None
    if args.users is not None:
        count = args.users
    elif args.token and (limit is None or limit >= 2 * per_user_wanted):
        count = 0  # one user carries it
    else:
        role_limit = 120 if limit is None else limit
        count = min(args.clients, math.ceil(per_user_wanted / (role_limit / 2)))
    keys = bench_users(base, data_dir, count) if count else [args.token or ""]
    print(f"credentials: {len(keys)} API keys (token limit {limit}/min)", file=sys.stderr, flush=True)

    users = users_part(base, keys, args) if "users" not in args.skip else None
    if users:
        print(json.dumps(users), file=sys.stderr, flush=True)
        time.sleep(2)
    sse = asyncio.run(sse_part(base, keys, args)) if "sse" not in args.skip else None
    print(table(users, sse))
    print(json.dumps({"users": users, "sse": sse, "load_at_end": load_line()}))


if __name__ == "__main__":
    main()
