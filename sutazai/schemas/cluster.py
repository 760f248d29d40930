"""Response models of the cluster status route: what Ray and Serve report, typed."""

from __future__ import annotations

from pydantic import BaseModel


class NodeInfo(BaseModel):
    node_id: str
    alive: bool
    address: str
    hostname: str
    resources_total: dict[str, float]
    resources_available: dict[str, float] | None = None  # None when Ray could not say
    gpus: float
    labels: dict[str, str]


class ReplicaInfo(BaseModel):
    replica_id: str
    state: str
    node_id: str | None = None


class DeploymentInfo(BaseModel):
    name: str
    status: str
    message: str = ""
    target_replicas: int | None = None
    running_replicas: int
    replica_states: dict[str, int]
    replicas: list[ReplicaInfo] = []


class ApplicationInfo(BaseModel):
    name: str
    status: str
    message: str = ""
    deployments: list[DeploymentInfo]


class ActorInfo(BaseModel):
    name: str
    namespace: str
    class_name: str
    state: str
    node_id: str | None = None
    pid: int | None = None


class ClusterStatus(BaseModel):
    """Each part is read on its own: one that fails leaves its `*_error` and an empty list."""

    on_ray: bool
    detail: str | None = None
    nodes: list[NodeInfo] = []
    applications: list[ApplicationInfo] = []
    actors: list[ActorInfo] = []
    nodes_error: str | None = None
    serve_error: str | None = None
    actors_error: str | None = None
