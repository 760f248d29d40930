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


class ScalingDecision(BaseModel):
    """One decision of Serve's autoscaler, as its controller reports it (when it does)."""

    at: float  # Unix time
    reason: str
    from_replicas: int
    to_replicas: int


class AutoscalingInfo(BaseModel):
    """A deployment's autoscaling bounds and where it stands: `scaling` is UPSCALING, DOWNSCALING or
    STABLE (the target against the running replicas); `last_change` is Serve's trigger for the
    current status (UPSCALE_COMPLETED, DOWNSCALE_COMPLETED, AUTOSCALING, ...)."""

    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None
    upscale_delay_s: float | None = None
    downscale_delay_s: float | None = None
    scaling: str
    last_change: str | None = None
    decisions: list[ScalingDecision] = []  # Serve's recent decisions; empty where Ray does not record them


class DeploymentInfo(BaseModel):
    name: str
    status: str
    message: str = ""
    target_replicas: int | None = None
    running_replicas: int
    replica_states: dict[str, int]
    replicas: list[ReplicaInfo] = []
    autoscaling: AutoscalingInfo | None = None  # None: a fixed number of replicas


class ApplicationInfo(BaseModel):
    name: str
    status: str
    message: str = ""
    deployments: list[DeploymentInfo]


class ActorInfo(BaseModel):
    """A named actor of namespace `sutazai`: MCP servers (`mcp-<server>`) and the task dispatcher's
    agent runners (`agent-runner-<dispatcher replica>-<n>`)."""

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
