"""Cluster status straight from Ray's state and Serve APIs: nodes, Serve applications and
their replicas, and the app's named actors (the MCP servers) with the node each runs on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter

from sutazai.api.deps import ViewerDep
from sutazai.schemas.cluster import ActorInfo, ApplicationInfo, ClusterStatus, DeploymentInfo, NodeInfo, ReplicaInfo

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
            deployments.append(
                DeploymentInfo(
                    name=name,
                    status=_name(dep.status),
                    message=dep.message or "",
                    target_replicas=found.get("target_num_replicas"),
                    running_replicas=states.get("RUNNING", 0),
                    replica_states=states,
                    replicas=replicas,
                )
            )
        apps.append(
            ApplicationInfo(name=app_name, status=_name(app.status), message=app.message or "", deployments=deployments)
        )
    return apps


def _actors() -> list[ActorInfo]:
    from ray.util.state import list_actors

    found = list_actors(
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
