"""Serve autoscaling, shown: concurrent load on the CPU model deployment takes it from 1 replica
to 2, and back to 1 after the load stops. Prints a timeline (every second: seconds since start,
requests in flight from this client, running replicas, Serve's target) and when each change came.

By default it starts a Ray instance and a small Serve app of its own: the CPU model deployment
(`deployments.app.cpu_model_deployment`, models/gemma3-270m.yaml) with autoscaling min 1, max 2,
target_ongoing_requests 1, upscale delay 2 s, downscale delay 5 s, one slot per replica.
`--address ADDR --app sutazai --deployment llm-gemma3-270m` loads a running app's deployment
instead (its own autoscaling config applies; the driver needs the cluster's token).

    .venv/bin/python bench/autoscaling.py [--concurrency 4] [--load-s 40] [--settle-s 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import yaml  # noqa: E402

from sutazai.catalog import ModelSpec  # noqa: E402
from sutazai.schemas.engine import GenerationRequest  # noqa: E402

APP = "autoscaling-bench"
PROMPT = "Once upon a time"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_spec() -> ModelSpec:
    data = yaml.safe_load((ROOT / "models" / "gemma3-270m.yaml").read_text())
    data["resources"] = {"num_cpus": 0.5}
    data["cpu"] = {"slots": 1, "threads_per_slot": 1}
    data["deployment"] = {"max_ongoing_requests": 2, "max_queued_requests": 64}
    data["autoscaling"] = {
        "min_replicas": 1,
        "max_replicas": 2,
        "target_ongoing_requests": 1,
        "upscale_delay_s": 2,
        "downscale_delay_s": 5,
        "look_back_period_s": 11,  # must exceed Serve's 10 s metrics interval
    }
    return ModelSpec.model_validate(data)


def replicas(app: str, deployment: str) -> tuple[int, int | None, str]:
    """(running, target, status) as Serve reports them now."""
    from ray import serve
    from ray.serve.context import _get_global_client

    dep = serve.status().applications[app].deployments[deployment]
    running = sum(int(v) for k, v in dep.replica_states.items() if str(getattr(k, "value", k)) == "RUNNING")
    target = None
    client = _get_global_client()
    if client is not None:
        details = client.get_serve_details()
        target = details["applications"][app]["deployments"][deployment].get("target_num_replicas")
    return running, target, str(getattr(dep.status, "value", dep.status))


async def run(handle: Any, app: str, deployment: str, concurrency: int, load_s: float, settle_s: float) -> None:
    in_flight = 0
    done = 0
    loading = asyncio.Event()
    stop = asyncio.Event()
    request = GenerationRequest(prompt=PROMPT, max_tokens=48, temperature=0.7, top_p=0.95)

    async def client() -> None:
        nonlocal in_flight, done
        await loading.wait()
        while not stop.is_set():
            in_flight += 1
            try:
                await handle.generate.remote(request)
                done += 1
            finally:
                in_flight -= 1

    rows: list[tuple[float, int, int, int | None, str]] = []
    clients = [asyncio.create_task(client()) for _ in range(concurrency)]
    start = time.monotonic()
    load_from, load_until = 5.0, 5.0 + load_s
    print(f"{'t_s':>5} {'in_flight':>9} {'running':>7} {'target':>6}  status", flush=True)
    back_to_one_at = None
    while True:
        t = time.monotonic() - start
        if t >= load_from and not loading.is_set():
            loading.set()
        if t >= load_until and not stop.is_set():
            stop.set()
        running, target, status = await asyncio.to_thread(replicas, app, deployment)
        rows.append((t, in_flight, running, target, status))
        print(f"{t:5.1f} {in_flight:9d} {running:7d} {target!s:>6}  {status}", flush=True)
        if stop.is_set() and t > load_until + 5 and running == 1 and target == 1 and back_to_one_at is None:
            back_to_one_at = t
            break
        if t > load_until + settle_s:
            break
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - start - t)))
    await asyncio.gather(*clients, return_exceptions=True)

    def first(pred: Any) -> float | None:
        return next((r[0] for r in rows if pred(r)), None)

    target_up = first(lambda r: r[3] is not None and r[3] >= 2)
    running_up = first(lambda r: r[2] >= 2)
    target_down = first(lambda r: r[0] > load_until and r[3] == 1)
    running_down = first(lambda r: r[0] > load_until and r[2] == 1)

    def since(a: float | None, b: float) -> str:
        return "never" if a is None else f"{a - b:.1f} s"

    print(f"\nload: {concurrency} concurrent requests from t={load_from:.0f} s to t={load_until:.0f} s; {done} done")
    up, running_2 = since(target_up, load_from), since(running_up, load_from)
    down, running_1 = since(target_down, load_until), since(running_down, load_until)
    print(f"target 1 -> 2: {up} after load began; 2 replicas running: {running_2}")
    print(f"target 2 -> 1: {down} after load ended; 1 replica running: {running_1}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", help="a running cluster (else a Ray instance and app of this script's own)")
    parser.add_argument("--app", default="sutazai")
    parser.add_argument("--deployment", default="llm-gemma3-270m")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--load-s", type=float, default=40.0)
    parser.add_argument("--settle-s", type=float, default=60.0)
    args = parser.parse_args()

    import ray
    from ray import serve

    if args.address:
        ray.init(address=args.address, log_to_driver=False)
        app, deployment = args.app, args.deployment
        handle = serve.get_deployment_handle(deployment, app_name=app)
    else:
        from deployments.app import cpu_model_deployment

        spec = bench_spec()
        data_dir = os.environ.get("SUTAZAI_DATA_DIR") or str(ROOT / ".data")
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            namespace="autoscaling-bench",
            log_to_driver=False,
            logging_level="WARNING",
            _temp_dir=tempfile.mkdtemp(prefix="ray-bench-"),
        )
        serve.start(http_options={"host": "127.0.0.1", "port": _free_port()})
        app, deployment = APP, spec.deployment_name
        print(f"deploying {deployment} (autoscaling {spec.autoscaling.to_serve()}) ...", flush=True)
        handle = serve.run(cpu_model_deployment(spec, {"SUTAZAI_DATA_DIR": data_dir}), name=app, route_prefix=None)
    try:
        asyncio.run(run(handle, app, deployment, args.concurrency, args.load_s, args.settle_s))
    finally:
        if not args.address:
            serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
