"""Our metrics, recorded through `ray.util.metrics` so that Ray's exporter aggregates them
over every replica and node (exported with a `ray_` prefix, `_total` on counters).

Names follow vLLM's where one exists (`time_to_first_token_seconds`, `num_requests_running`,
...) so its dashboards translate. Each metric is created on first use in a process: importing
this module never needs Ray, and a process that is not on Ray records nothing. Recording never
breaks a request: a failure is logged at debug level and swallowed.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

logger = logging.getLogger("sutazai.metrics")

Kind = Literal["counter", "histogram", "gauge"]

LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]
TOKEN_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5]


class Metric:
    """One metric, made in this process on its first recording (never at import)."""

    def __init__(
        self,
        kind: Kind,
        name: str,
        description: str,
        tag_keys: tuple[str, ...],
        boundaries: list[float] | None = None,
    ) -> None:
        self.kind, self.name, self.description, self.tag_keys, self.boundaries = (
            kind,
            name,
            description,
            tag_keys,
            boundaries,
        )
        self._made: Any = None
        self._lock = threading.Lock()

    def _metric(self) -> Any:
        if self._made is None:
            import ray
            from ray.util import metrics

            if not ray.is_initialized():
                return None
            with self._lock:
                if self._made is None:
                    if self.kind == "counter":
                        self._made = metrics.Counter(self.name, self.description, tag_keys=self.tag_keys)
                    elif self.kind == "histogram":
                        self._made = metrics.Histogram(
                            self.name,
                            self.description,
                            boundaries=self.boundaries or LATENCY_BUCKETS,
                            tag_keys=self.tag_keys,
                        )
                    else:
                        self._made = metrics.Gauge(self.name, self.description, tag_keys=self.tag_keys)
        return self._made

    def record(self, value: float = 1.0, **tags: str) -> None:
        """Count (counter), observe (histogram) or set (gauge) `value`; never raises."""
        try:
            metric = self._metric()
            if metric is None:
                return
            if self.kind == "counter":
                if value > 0:
                    metric.inc(value, tags=tags)
            elif self.kind == "histogram":
                metric.observe(value, tags=tags)
            else:
                metric.set(value, tags=tags)
        except Exception as exc:
            logger.debug("metric %s not recorded: %s", self.name, exc)


HTTP_REQUESTS = Metric(
    "counter",
    "sutazai_http_requests",
    "HTTP requests by route template, method and status.",
    ("route", "method", "status"),
)
HTTP_REQUEST_DURATION = Metric(
    "histogram",
    "sutazai_http_request_duration_seconds",
    "HTTP request latency until the response ends (a stream's whole length).",
    ("route", "method"),
    LATENCY_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Metric(
    "histogram",
    "sutazai_time_to_first_token_seconds",
    "From a request reaching the engine to its first text.",
    ("model",),
    LATENCY_BUCKETS,
)
INTER_TOKEN_LATENCY = Metric(
    "histogram",
    "sutazai_inter_token_latency_seconds",
    "Time between successive pieces of streamed text.",
    ("model",),
    TOKEN_BUCKETS,
)
PROMPT_TOKENS = Metric("counter", "sutazai_prompt_tokens", "Prompt tokens processed.", ("model",))
PROMPT_TOKENS_CACHED = Metric(
    "counter", "sutazai_prompt_tokens_cached", "Prompt tokens reused from the engine's cache, not decoded.", ("model",)
)
GENERATION_TOKENS = Metric("counter", "sutazai_generation_tokens", "Tokens generated.", ("model",))
REQUESTS_RUNNING = Metric(
    "gauge", "sutazai_num_requests_running", "Requests decoding in a slot, per replica.", ("model",)
)
REQUESTS_WAITING = Metric(
    "gauge", "sutazai_num_requests_waiting", "Requests waiting for a free slot, per replica.", ("model",)
)
CACHE_HITS = Metric("counter", "sutazai_cache_hits", "Response cache hits.", ("model",))
CACHE_MISSES = Metric(
    "counter", "sutazai_cache_misses", "Response cache misses (deterministic requests only).", ("model",)
)
MCP_CALL_DURATION = Metric(
    "histogram",
    "sutazai_mcp_call_duration_seconds",
    "MCP tool call latency through the actor, by server.",
    ("server",),
    LATENCY_BUCKETS,
)
MCP_CALL_ERRORS = Metric(
    "counter",
    "sutazai_mcp_call_errors",
    "MCP tool calls that failed (kind: call = no answer, tool = the tool reported an error).",
    ("server", "kind"),
)
RATE_LIMITED = Metric("counter", "sutazai_rate_limited_requests", "Requests refused with 429, by reason.", ("code",))

# Durable tasks (the dispatcher and the runners).
TASKS_STARTED = Metric("counter", "sutazai_tasks_started", "Task attempts started, by kind.", ("kind",))
TASKS_FINISHED = Metric(
    "counter", "sutazai_tasks_finished", "Task attempts that ended, by kind and outcome.", ("kind", "status")
)
TASK_QUEUE_WAIT = Metric(
    "histogram",
    "sutazai_task_queue_wait_seconds",
    "From a task's submission (or retry time) to its attempt starting.",
    ("kind",),
)
TASK_RUN_DURATION = Metric(
    "histogram", "sutazai_task_run_duration_seconds", "One attempt, start to end, by kind.", ("kind",)
)
