"""Chat latency with and without a batch job running on the same CPU model.

    .venv/bin/python bench/batch_vs_chat.py [--chats 12] [--batch-lines 60] [--concurrency 1]

Starts Ray (with the dashboard: job submission needs it) and the Serve app like the tests,
then: (1) `--chats` sequential POST /api/v1/chat (max_tokens 16, cache off), idle;
(2) submits a batch job of `--batch-lines` prompts (max_tokens 64) through
POST /api/v1/jobs/batch, waits until it writes results, and sends the same chats while it
runs; (3) stops the job. Prints chat p50/p90 for both phases and the batch's lines/s.
`--concurrency` is `batch_job_concurrency`: requests the job keeps in flight.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

CHAT = {"max_tokens": 16, "temperature": 0.7}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_head(settings: object, env: dict[str, str]) -> str:
    """`sutazai.cli.start_ray_head`'s head with 4 logical CPUs, as the tests have: on 2 cores
    the model, the embedder and the ingress would not all be placed."""
    from sutazai.cli import _ray_bin, ray_dir

    port = settings.ray_port  # type: ignore[attr-defined]
    cmd = [_ray_bin(), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "4"]
    cmd += ["--temp-dir", str(ray_dir(settings)), "--dashboard-host", "127.0.0.1"]  # type: ignore[arg-type]
    cmd += ["--dashboard-port", str(settings.dashboard_port), "--dashboard-agent-listen-port", "0"]  # type: ignore[attr-defined]
    cmd += ["--ray-client-server-port", str(free_port()), "--disable-usage-stats"]
    subprocess.run(cmd, check=True, env={**os.environ, **env}, start_new_session=True, capture_output=True)
    return f"127.0.0.1:{port}"


def start_app(concurrency: int) -> tuple[str, str, object, Path]:
    from sutazai.cli import head_env
    from sutazai.settings import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="sutazai-bench-"))
    # A head from `ray start`, as `sutazai run` starts it: token auth (the job client must send
    # the cluster token) and a dashboard agent on a free port (another cluster on this machine
    # may hold Ray's default 52365, and without its agent the job server refuses submissions).
    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        ray_port=free_port(),
        dashboard_port=free_port(),
        metrics_export_port=free_port(),
    )
    os.environ.update(head_env(settings))  # before Ray is imported: it reads RAY_AUTH_MODE then
    import ray
    from ray import serve

    from deployments.app import build_app
    from sutazai.embedded import start_missing

    servers = start_missing(data_dir, os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL"))
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
        "SUTAZAI_BATCH_JOB_CONCURRENCY": str(concurrency),
    }
    env |= head_env(settings)
    os.environ.update(env)
    address = start_head(settings, env)
    try:
        ray.init(
            address=address,
            _node_ip_address="127.0.0.1",  # the head listens on loopback only
            logging_level="ERROR",
            log_to_driver=False,
            runtime_env={"env_vars": env},
        )
    except BaseException:
        from sutazai.cli import ray_dir, stop_ray_head

        stop_ray_head(ray_dir(settings))
        raise
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"env": env}), name="sutazai", route_prefix="/")
    base_url = f"http://127.0.0.1:{port}"
    r = httpx.post(
        f"{base_url}/api/v1/auth/login",
        timeout=30,
        json={"username": env["SUTAZAI_ADMIN_USERNAME"], "password": admin_password},
    )
    r.raise_for_status()
    return base_url, r.json()["access_token"], servers, data_dir


def chats(client: httpx.Client, n: int, tag: str) -> list[float]:
    took = []
    for i in range(n):
        started = time.perf_counter()
        r = client.post("/api/v1/chat", json={"message": f"Name a colour ({tag} {i}).", **CHAT})
        r.raise_for_status()
        took.append(time.perf_counter() - started)
    return took


def summary(took: list[float]) -> str:
    q = statistics.quantiles(took, n=10)
    return f"p50 {statistics.median(took) * 1000:6.0f} ms  p90 {q[8] * 1000:6.0f} ms  (n={len(took)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=12)
    parser.add_argument("--batch-lines", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    base_url, token, servers, data_dir = start_app(args.concurrency)
    try:
        with httpx.Client(base_url=base_url, timeout=300, headers={"Authorization": f"Bearer {token}"}) as client:
            print("app up", flush=True)
            chats(client, 2, "warm-up")
            idle = chats(client, args.chats, "idle")
            prompts = [f"Write a short story about a {i}-legged animal:" for i in range(args.batch_lines)]
            for _ in range(30):  # the dashboard's job agent may still be starting
                r = client.post("/api/v1/jobs/batch", json={"prompts": prompts, "max_tokens": 64})
                if r.status_code != 503:
                    break
                print("job server not ready:", r.json()["error"]["message"][:200])
                time.sleep(2)
            r.raise_for_status()
            job_id = r.json()["id"]
            submitted = time.perf_counter()
            print("submitted", job_id, flush=True)
            while (job := client.get(f"/api/v1/jobs/{job_id}").json())["progress"]["done"] < 1:
                assert job["status"] in ("PENDING", "RUNNING"), job
                assert time.perf_counter() - submitted < 180, job
                time.sleep(0.5)
            first_line_s = time.perf_counter() - submitted
            start_done, started = job["progress"]["done"], time.perf_counter()
            during = chats(client, args.chats, "batch")
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            lines_per_s = (job["progress"]["done"] - start_done) / (time.perf_counter() - started)
            still_running = job["status"] == "RUNNING"
            client.post(f"/api/v1/jobs/{job_id}/stop")
        print(f"batch job concurrency {args.concurrency}; chat max_tokens {CHAT['max_tokens']}, batch max_tokens 64")
        print(f"chat idle          {summary(idle)}")
        print(f"chat during batch  {summary(during)}  (batch still running at the end: {still_running})")
        print(f"batch: first result {first_line_s:.1f} s after submit; {lines_per_s:.2f} lines/s while chatting")
    finally:
        import ray
        from ray import serve

        from sutazai.cli import ray_dir, stop_ray_head
        from sutazai.settings import Settings

        serve.shutdown()
        ray.shutdown()
        stop_ray_head(ray_dir(Settings(_env_file=None, data_dir=data_dir)))
        servers.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
