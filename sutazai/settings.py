"""All configuration in one place, read from the environment (and `.env`).

Connection URLs keep their conventional names (`DATABASE_URL`, `REDIS_URL`,
`RAY_ADDRESS`): unset means the embedded default. Everything else is prefixed
`SUTAZAI_`. Each process builds its settings once (`get_settings`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUTAZAI_", env_file=".env", extra="ignore")

    # Connections: unset -> embedded servers started by `sutazai run`.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "SUTAZAI_DATABASE_URL")
    )
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "SUTAZAI_REDIS_URL"))
    ray_address: str | None = Field(default=None, validation_alias=AliasChoices("RAY_ADDRESS", "SUTAZAI_RAY_ADDRESS"))
    # Vectors: unset -> the embedded qdrant-edge shard behind one Ray actor (sutazai/vectors).
    qdrant_url: str | None = Field(default=None, validation_alias=AliasChoices("QDRANT_URL", "SUTAZAI_QDRANT_URL"))
    qdrant_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("QDRANT_API_KEY", "SUTAZAI_QDRANT_API_KEY")
    )
    vector_collection: str = "sutazai_chunks"

    data_dir: Path = PROJECT_ROOT / ".data"
    models_dir: Path = PROJECT_ROOT / "models"

    # HTTP / Ray ports for the embedded start.
    host: str = "127.0.0.1"
    port: int = 8000
    ray_port: int = 6390  # not 6379: that is Redis's port
    # `sutazai run`'s own head: Serve's HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY, ~3x the req/s of
    # Serve's Python proxy), bound to `host`. Off: Serve's default proxy.
    haproxy: bool = True
    # HAProxy's global connection cap (RAY_SERVE_HAPROXY_MAXCONN; lowered to what the open files
    # limit allows: HAProxy needs ~2.5 descriptors a connection and refuses to start otherwise) and
    # its threads (unset: half the machine's cores, 1 to 4; Serve's default is 4 whatever the machine).
    haproxy_maxconn: int = 4096
    haproxy_threads: int | None = None
    # The niceness Ray starts its workers at (RAY_worker_niceness; Ray's default is 15): every Serve
    # replica, HAProxy and the actors. 0 serves at the priority of Postgres and Redis, so a build or
    # a batch job on the same machine does not take the CPU from requests first.
    worker_niceness: int = Field(default=0, ge=0, le=19)
    # RAY_SERVE_THROUGHPUT_OPTIMIZED on `sutazai run`'s head: replicas run user code and the router on
    # their main loop (no thread hop), calls between deployments over gRPC, no per-request stderr log,
    # GC frozen after start. Measured in one session, 2 cores, same app otherwise: cached chat idle
    # p50 8.9 -> 7.4 ms, one stream 29 -> 36 tok/s, /health at 32 connections 621 -> 1,326 req/s,
    # an API-key route 367 -> 564 req/s. Off: Serve's defaults.
    serve_throughput_optimized: bool = True
    dashboard_port: int = 8265
    # Where job submission reaches the Ray dashboard (http://host:port); unset: the dashboard of
    # the cluster this process is connected to, else 127.0.0.1:dashboard_port.
    dashboard_address: str | None = None
    metrics_export_port: int = 8266
    app_name: str = "sutazai"
    # The Serve application `sutazai run` deploys, named as serve_config.yaml names it.
    app_import_path: str = "deployments.app:build_app"

    # Ingress.
    # Two from the start: one Python process tops out near 535 authenticated req/s here, so 1,000
    # clients at 1 req/s timed out (p95 5.3 s, 1,180 timeouts); with two, 976 req/s, p95 538 ms,
    # none (bench/thousand_users.py, 2 cores, one run each). Each holds ~400 MiB.
    ingress_min_replicas: int = 2
    ingress_max_replicas: int = 2
    # Requests one ingress replica holds at once: an async app whose requests mostly wait (on
    # Redis, Postgres, a model, an idle SSE stream), so it is sized for 1,000 clients, not for CPU.
    ingress_max_ongoing_requests: int = 2000
    ingress_access_log: bool = False  # Serve's per-request log line (file + driver): off on the hot path
    ingress_num_cpus: float = 0.1  # Ray's accounting: 2 of them + the model's 1 CPU + the rest fit in 2 cores
    request_timeout_s: float = 120.0
    max_body_bytes: int = 1_048_576

    # Chat behaviour.
    default_model: str | None = None  # first enabled model in the catalog when unset
    system_prompt: str = "You are SutazAI, a helpful, concise assistant."
    history_messages: int = 20  # most recent messages of a conversation sent as context
    batch_max_prompts: int = 64
    batch_concurrency: int = 4
    # Batch jobs (`ray job submit`, /api/v1/jobs): inputs and results under jobs_dir.
    batch_job_max_lines: int = 10_000
    batch_job_concurrency: int = 1  # requests a job has in flight: chat keeps the model's other slots

    # Response cache (Redis).
    cache_enabled: bool = True
    cache_ttl_s: int = 3600
    cache_shared: bool = False  # True: users share cached answers (and learn what others asked)
    redis_timeout_s: float = 0.5

    # Postgres pool.
    db_pool_min: int = 1
    db_pool_max: int = 10
    db_timeout_s: float = 5.0

    # Auth. No default password anywhere; the JWT secret is required outside the
    # embedded dev default.
    jwt_secret: SecretStr | None = None
    jwt_algorithm: str = "HS256"
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 14 * 24 * 3600
    session_max_s: int = 30 * 24 * 3600  # a login session ends this long after login, refreshed or not
    admin_username: str = "admin"
    admin_password: SecretStr | None = None
    # Secrets as files (a mounted Kubernetes secret, a 0600 file): read at start, so the value
    # never sits in `ray start` environments or the Serve config Ray stores.
    jwt_secret_file: Path | None = None
    admin_password_file: Path | None = None
    cors_origins: list[str] = []
    # /docs, /redoc and /openapi.json; unset: on in the embedded default, off elsewhere.
    docs_enabled: bool | None = None
    rate_limit_requests_per_minute: dict[str, int] = {"admin": 600, "user": 120, "viewer": 60}
    rate_limit_tokens_per_minute: dict[str, int] = {"admin": 200_000, "user": 40_000, "viewer": 10_000}
    login_attempts_per_minute: int = 10
    max_api_keys_per_user: int = 50  # unrevoked, unexpired keys
    auth_failures_per_minute: int = 30  # per client address, before it gets 429 without a lookup
    # Resolved principals cached per replica (0: off); revocations drop them at once.
    auth_cache_ttl_s: float = 30.0
    max_concurrent_model_requests: int = 8  # per user, over every replica
    # Proxies whose X-Forwarded-For is believed (addresses or CIDRs); none by default.
    trusted_proxies: list[str] = []

    # MCP servers: the `mcpServers` JSON that desktop clients use.
    mcp_config: Path = PROJECT_ROOT / "cluster" / "mcp" / "servers.json"
    mcp_enabled: bool = True

    # Agents and durable tasks.
    agents_dir: Path = PROJECT_ROOT / "cluster" / "agents"  # Markdown definitions, synced at start
    task_runners: int = 2  # agent runner actors per dispatcher, spread over the cluster
    task_runner_num_cpus: float = 0.1
    tasks_max_running: int = 16  # agent tasks running at once, per dispatcher
    tasks_max_running_per_agent: int = 8
    orchestrations_max_running: int = 16  # parent tasks wait on children: a pool of their own
    indexing_max_running: int = 2  # documents being indexed at once, per dispatcher
    task_max_attempts: int = 3
    task_lease_s: float = 30.0  # a runner that misses heartbeats this long loses its task
    task_retry_backoff_s: float = 1.0  # doubled per attempt
    task_wait_max_s: float = 300.0  # the longest `wait: true` holds a request

    # Documents: originals under documents_dir (data_dir/documents unless set), chunked for retrieval.
    documents_dir_override: Path | None = Field(
        default=None, validation_alias=AliasChoices("SUTAZAI_DOCUMENTS_DIR", "documents_dir")
    )
    documents_max_bytes: int = 20 * 1024 * 1024
    chunk_tokens: int = 200
    chunk_overlap_tokens: int = 30

    # Health checks.
    health_timeout_s: float = 3.0
    retry_after_s: int = 2
    # How often each ingress replica deletes refresh tokens past their expiry.
    purge_interval_s: float = 3600.0

    @model_validator(mode="after")
    def _read_secret_files(self) -> Settings:
        for name in ("jwt_secret", "admin_password"):
            path = getattr(self, f"{name}_file")
            if path is not None and getattr(self, name) is None:
                value = Path(path).read_text().strip()
                if not value:
                    raise ValueError(f"{path} ({name}_file) is empty")
                setattr(self, name, SecretStr(value))
        return self

    @property
    def documents_dir(self) -> Path:
        return self.documents_dir_override or self.data_dir / "documents"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def embedded(self) -> bool:
        """The embedded default: no database given, so `sutazai run` starts its own servers
        (and may make its own JWT secret and first-admin password under the data folder)."""
        return self.database_url is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process; each replica reads its own environment once."""
    return Settings()
