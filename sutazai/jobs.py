"""Batch jobs through Ray's job submission API: a thin wrapper over `JobSubmissionClient`.

A job runs `python -m cluster.jobs.batch` (the repository as its `working_dir`) on the
cluster; it reaches the model through the running Serve app (`serve.get_deployment_handle`),
so it needs none of the replicas' secrets. The dashboard address is `dashboard_address`
when set, else the dashboard of the cluster this process belongs to (a Serve replica's),
else 127.0.0.1:`dashboard_port`.

Token auth: with `RAY_AUTH_MODE=token` in this process's environment (every process of a
head that `sutazai run` started has it, with `RAY_AUTH_TOKEN_PATH`; an operator's cluster
sets it likewise), Ray's `JobSubmissionClient` adds `Authorization: Bearer <cluster token>`
itself: `ray._private.authentication.http_token_authentication.get_auth_headers_if_auth_enabled`
reads the token from `RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token`.

The client is synchronous (HTTP through `requests`): the async methods run it in a thread.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sutazai.settings import PROJECT_ROOT, Settings

ENTRYPOINT_MODULE = "cluster.jobs.batch"
TERMINAL = ("STOPPED", "SUCCEEDED", "FAILED")
# Not shipped with the job: it needs the code and the model files, nothing else.
WORKING_DIR_EXCLUDES = [".git", ".venv", ".data", "tests", "bench", "cluster/mcp/node_modules", "*.gguf"]
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class JobState:
    status: str  # Ray's JobStatus: PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED
    message: str | None
    start_time_ms: int | None
    end_time_ms: int | None


def dashboard_address(settings: Settings) -> str:
    if settings.dashboard_address:
        return settings.dashboard_address
    try:
        import ray

        if ray.is_initialized():
            from ray._private.services import get_webui_url_from_internal_kv

            url = get_webui_url_from_internal_kv()  # this cluster's dashboard (host:port), as it registered
            if url:
                return url if "://" in url else f"http://{url}"
    except Exception:  # not in a Ray process, or no dashboard: the configured port
        pass
    return f"http://127.0.0.1:{settings.dashboard_port}"


def batch_entrypoint(
    input_path: Path,
    output_path: Path,
    model: str,
    *,
    max_tokens: int | None,
    temperature: float | None,
    concurrency: int,
    app_name: str,
) -> str:
    """The job's command line (this interpreter: the cluster's nodes share the image)."""
    args = [sys.executable, "-m", ENTRYPOINT_MODULE, "--input", str(input_path), "--output", str(output_path)]
    args += ["--model", model, "--concurrency", str(concurrency), "--app-name", app_name]
    if max_tokens is not None:
        args += ["--max-tokens", str(max_tokens)]
    if temperature is not None:
        args += ["--temperature", str(temperature)]
    return shlex.join(args)


class BatchJobs:
    """Submit, read, stop and tail batch jobs on the cluster's job server."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self.settings = settings
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(dashboard_address(self.settings))
        return self._client

    def runtime_env(self) -> dict[str, Any]:
        env_vars = {"RAY_DATA_DEFAULT_ASYNC_BATCH_UDF_MAX_CONCURRENCY": "1"}  # see cluster/jobs/batch.py
        if self.settings.models_dir != PROJECT_ROOT / "models":
            env_vars["SUTAZAI_MODELS_DIR"] = str(self.settings.models_dir)
        return {"working_dir": str(PROJECT_ROOT), "excludes": WORKING_DIR_EXCLUDES, "env_vars": env_vars}

    def submit_sync(self, job_id: str, entrypoint: str, metadata: dict[str, str]) -> str:
        return str(
            self.client.submit_job(
                entrypoint=entrypoint, submission_id=job_id, runtime_env=self.runtime_env(), metadata=metadata
            )
        )

    async def submit(self, job_id: str, entrypoint: str, metadata: dict[str, str]) -> str:
        return await asyncio.to_thread(self.submit_sync, job_id, entrypoint, metadata)

    def _state(self, info: Any) -> JobState:
        status = getattr(info.status, "value", str(info.status))
        return JobState(str(status), info.message, info.start_time, info.end_time)

    async def state(self, job_id: str) -> JobState | None:
        """None when the job server does not know the job (e.g. a new cluster)."""

        def get() -> JobState | None:
            try:
                return self._state(self.client.get_job_info(job_id))
            except RuntimeError as exc:  # the SDK raises RuntimeError for 404s
                if "does not exist" in str(exc) or "404" in str(exc):
                    return None
                raise

        return await asyncio.to_thread(get)

    async def states(self) -> dict[str, JobState]:
        """Every job the server knows, by submission id (one call for a list page)."""

        def get() -> dict[str, JobState]:
            return {j.submission_id: self._state(j) for j in self.client.list_jobs() if j.submission_id}

        return await asyncio.to_thread(get)

    async def stop(self, job_id: str) -> bool:
        return bool(await asyncio.to_thread(self.client.stop_job, job_id))

    async def log_tail(self, job_id: str, lines: int = LOG_TAIL_LINES) -> str:
        logs = await asyncio.to_thread(self.client.get_job_logs, job_id)
        return "\n".join(str(logs).splitlines()[-lines:])
