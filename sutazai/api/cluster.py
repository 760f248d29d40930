"""Cluster status straight from Ray's state and Serve APIs: nodes, Serve applications and
their replicas with each deployment's autoscaling state, and the app's named actors (the MCP
servers and the agent runners) with the node each runs on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter

from sutazai.api.deps import ViewerDep
from sutazai.schemas.cluster import (
    ActorInfo,
    ApplicationInfo,
    AutoscalingInfo,
    ClusterStatus,
    DeploymentInfo,
    NodeInfo,
    ReplicaInfo,
    ScalingDecision,
)

router = APIRouter(prefix="/api/v1/cluster", tags=["cluster"])

NAMESPACE = "sutazai"  # the Ray namespace of the app's named actors
ACTORS_LIMIT = 200
TIMEOUT_S = 10.0

T = TypeVar("T")


async def _off_loop(call: Callable[[], T], timeout_s: float = TIMEOUT_S) -> T:
    """Ray's state calls block: run them in a thread, bounded in time."""
    return await asyncio.wait_for(asyncio.to_thread(call), timeout_s)


def _error(what: str, exc: BaseException) -> str:
    return f"{what} unavailable: {type(exc).__name__}: {exc}"[:300]


def _name(value: Any) -> str:
    return str(getattr(value, "value", value))


def _nodes() -> list[NodeInfo]:
    import ray

    try:
        from ray._private.state import available_resources_per_node

        available: dict[str, dict[str, float]] | None = available_resources_per_node()
    except Exception:  # a private API: the total still answers without it
        available = None
    nodes = []
    for node in ray.nodes():
        total = {k: float(v) for k, v in (node.get("Resources") or {}).items()}
        node_id = str(node["NodeID"])
        nodes.append(
            NodeInfo(
                node_id=node_id,
                alive=bool(node.get("Alive")),
                address=str(node.get("NodeManagerAddress", "")),
                hostname=str(node.get("NodeManagerHostname", "")),
                resources_total=total,
                resources_available=(
                    {k: float(v) for k, v in available.get(node_id, {}).items()} if available is not None else None
                ),
                gpus=total.get("GPU", 0.0),
                labels={str(k): str(v) for k, v in (node.get("Labels") or {}).items()},
            )
        )
    return nodes


def _serve_details() -> dict[str, Any]:
    """Target replica counts and replica placement: Serve's controller knows them, `serve.status()` does not."""
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        details: dict[str, Any] = client.get_serve_details() if client is not None else {}
        return details.get("applications") or {}
    except Exception:
        return {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _autoscaling(found: dict[str, Any], status: str, trigger: str | None, running: int) -> AutoscalingInfo | None:
    """From the controller's deployment details: the autoscaling config in force, the direction
    (target against running replicas, or Serve's UPSCALING/DOWNSCALING status) and, where Ray fills
    `autoscaling_detail` (declared experimental in 2.60, not yet populated), its recent decisions."""
    config = (found.get("deployment_config") or {}).get("autoscaling_config")
    if not isinstance(config, dict):
        return None
    target = found.get("target_num_replicas")
    if status in ("UPSCALING", "DOWNSCALING"):
        scaling = status
    elif isinstance(target, int) and target != running:
        scaling = "UPSCALING" if target > running else "DOWNSCALING"
    else:
        scaling = "STABLE"
    detail = found.get("autoscaling_detail") or {}
    decisions = [
        ScalingDecision(
            at=float(d.get("timestamp_s", 0.0)),
            reason=str(d.get("reason", "")),
            from_replicas=int(d.get("prev_num_replicas", 0)),
            to_replicas=int(d.get("curr_num_replicas", 0)),
        )
        for d in detail.get("decisions") or []
        if isinstance(d, dict)
    ]
    min_r, max_r = _number(config.get("min_replicas")), _number(config.get("max_replicas"))
    return AutoscalingInfo(
        min_replicas=int(min_r) if min_r is not None else None,
        max_replicas=int(max_r) if max_r is not None else None,
        target_ongoing_requests=_number(config.get("target_ongoing_requests")),
        upscale_delay_s=_number(config.get("upscale_delay_s")),
        downscale_delay_s=_number(config.get("downscale_delay_s")),
        scaling=_name(detail.get("scaling_status")) if detail.get("scaling_status") else scaling,
        last_change=trigger,
        decisions=decisions,
    )


def _applications() -> list[ApplicationInfo]:
    from ray import serve

    status = serve.status()
    details = _serve_details()
    apps = []
    for app_name, app in status.applications.items():
        deployments = []
        app_details = (details.get(app_name) or {}).get("deployments") or {}
        for name, dep in app.deployments.items():
            states = {_name(k): int(v) for k, v in dep.replica_states.items()}
            found = app_details.get(name) or {}
            replicas = [
                ReplicaInfo(replica_id=str(r.get("replica_id")), state=_name(r.get("state")), node_id=r.get("node_id"))
                for r in found.get("replicas") or []
            ]
            dep_status, running = _name(dep.status), states.get("RUNNING", 0)
            trigger = getattr(dep, "status_trigger", None)
            deployments.append(
                DeploymentInfo(
                    name=name,
                    status=dep_status,
                    message=dep.message or "",
                    target_replicas=found.get("target_num_replicas"),
                    running_replicas=running,
                    replica_states=states,
                    replicas=replicas,
                    autoscaling=_autoscaling(
                        found, dep_status, _name(trigger) if trigger is not None else None, running
                    ),
                )
            )
        apps.append(
            ApplicationInfo(name=app_name, status=_name(app.status), message=app.message or "", deployments=deployments)
        )
    return apps


def _actors() -> list[ActorInfo]:
    import ray
    from ray.util.state import list_actors

    found = list_actors(
        # this process's cluster: with no address Ray looks for "the" local instance and refuses
        # when a machine runs more than one ("Found multiple active Ray instances")
        address=ray.get_runtime_context().gcs_address,
        filters=[("ray_namespace", "=", NAMESPACE)],
        limit=ACTORS_LIMIT,
        timeout=int(TIMEOUT_S),
        raise_on_missing_output=False,
    )
    return [
        ActorInfo(
            name=a.name or "",
            namespace=a.ray_namespace or NAMESPACE,
            class_name=a.class_name or "",
            state=_name(a.state),
            node_id=a.node_id,
            pid=a.pid,
        )
        for a in found
        if a.name
    ]


@router.get("/status", response_model=ClusterStatus)
async def cluster_status(caller: ViewerDep) -> ClusterStatus:
    """Nodes, Serve applications and named actors; each part answers or reports its own error."""
    import ray

    if not ray.is_initialized():  # asking would start a Ray instance of its own
        return ClusterStatus(on_ray=False, detail="not running on Ray: no cluster to report (embedded mode)")
    nodes, apps, actors = await asyncio.gather(
        _off_loop(_nodes), _off_loop(_applications), _off_loop(_actors, TIMEOUT_S + 2), return_exceptions=True
    )
    report = ClusterStatus(on_ray=True)
    if isinstance(nodes, BaseException):
        report.nodes_error = _error("nodes", nodes)
    else:
        report.nodes = nodes
    if isinstance(apps, BaseException):
        report.serve_error = _error("serve status", apps)
    else:
        report.applications = apps
    if isinstance(actors, BaseException):
        report.actors_error = _error("actors (Ray's state API, served by the dashboard)", actors)
    else:
        report.actors = actors
    return report
