"""Multi-node placement on a local two-node Ray cluster (run by tests/cluster/test_multinode.py in a
subprocess of its own, so that it never touches the test session's Ray; prints one JSON line).

A head node (CPUs only) and a second node that has a custom resource `fake_gpu`, standing in for
a GPU node. The CPU model deployment is built with `deployments.app.cpu_model_deployment` from
the gemma3-270m model file whose `resources.custom` asks for `fake_gpu: 1`, as a GPU model file
asks for `num_gpus`. The scenario records: which node its replica runs on, that it answers, and
what Serve and Ray report after that node is removed (no other node can host the replica).

Environment (the test sets it): a private RAY_TMPDIR and data folder, and token auth on with a
token file made for this run (`RAY_AUTH_MODE=token`, `RAY_AUTH_TOKEN_PATH`).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

APP = "multinode"
WAIT_S = 45.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _deployment(details: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(details["applications"][APP]["deployments"][name])


def _log(message: str) -> None:
    print(f"[multinode] {message}", file=sys.stderr, flush=True)


def main() -> dict[str, Any]:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster
    from ray.serve.context import _get_global_client

    from deployments.app import cpu_model_deployment
    from sutazai.catalog import ModelSpec
    from sutazai.schemas.engine import GenerationRequest
    from sutazai.sizing import Machine, size_model_files

    data = yaml.safe_load((ROOT / "models" / "gemma3-270m.yaml").read_text())
    data["resources"] = {"num_cpus": 0.5, "custom": {"fake_gpu": 1}}
    data["autoscaling"] = {"min_replicas": 1, "max_replicas": 1}
    data = size_model_files([data], Machine(cpus=2, memory_bytes=4 << 30))[0]  # the file's `auto`s
    spec = ModelSpec.model_validate(data)
    assert spec.ray_actor_options()["resources"] == {"fake_gpu": 1}

    result: dict[str, Any] = {}
    started = time.monotonic()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "gcs_server_port": _free_port(), "include_dashboard": False},
    )
    _log("head up")
    gpu_node = cluster.add_node(num_cpus=1, resources={"fake_gpu": 1})
    try:
        _log("second node up")
        ray.init(address=cluster.address, namespace="sutazai-multinode", log_to_driver=False)
        _log("driver connected")
        result["nodes"] = {
            n["NodeID"]: {k: v for k, v in n["Resources"].items() if k in ("CPU", "fake_gpu")} for n in ray.nodes()
        }
        result["gpu_node_id"] = gpu_node.node_id
        serve.start(http_options={"host": "127.0.0.1", "port": _free_port()})
        env = {"SUTAZAI_DATA_DIR": os.environ["SUTAZAI_DATA_DIR"]}
        handle = serve.run(cpu_model_deployment(spec, env), name=APP, route_prefix=None)
        result["deployed_s"] = round(time.monotonic() - started, 1)

        client = _get_global_client()
        assert client is not None
        placed = _deployment(client.get_serve_details(), spec.deployment_name)
        result["replica_nodes"] = [r["node_id"] for r in placed["replicas"]]
        result["required_resources"] = placed["required_resources"]
        answer = handle.generate.remote(
            GenerationRequest(prompt="2+2 =", max_tokens=4, temperature=0.0, top_p=1.0)
        ).result(timeout_s=30)
        result["answered"] = bool(answer.text is not None)

        removed_at = time.monotonic()
        cluster.remove_node(gpu_node, allow_graceful=False)
        seen: list[dict[str, Any]] = []
        while time.monotonic() - removed_at < WAIT_S:
            dep = serve.status().applications[APP].deployments[spec.deployment_name]
            states = {str(getattr(k, "value", k)): int(v) for k, v in dep.replica_states.items()}
            node_alive = next((bool(n["Alive"]) for n in ray.nodes() if n["NodeID"] == gpu_node.node_id), None)
            state = {
                "t": round(time.monotonic() - removed_at, 1),
                "status": str(getattr(dep.status, "value", dep.status)),
                "replica_states": states,
                "node_alive": node_alive,
            }
            if not seen or {k: v for k, v in state.items() if k != "t"} != {
                k: v for k, v in seen[-1].items() if k != "t"
            }:
                seen.append(state)
            if states.get("RUNNING", 0) == 0 and state["status"] != "HEALTHY" and node_alive is False:
                break
            time.sleep(0.5)
        result["after_removal"] = seen
        result["message"] = dep.message[:300]
        result["total_s"] = round(time.monotonic() - started, 1)
    finally:
        try:
            serve.shutdown()
        except Exception:
            pass
        ray.shutdown()
        cluster.shutdown()
    return result


if __name__ == "__main__":
    import faulthandler

    faulthandler.dump_traceback_later(float(os.environ.get("MULTINODE_DUMP_AFTER_S", "150")), exit=False)
    print("RESULT " + json.dumps(main()), flush=True)
