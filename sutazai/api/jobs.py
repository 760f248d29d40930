"""Batch jobs: offline inference over many prompts as a Ray job (`cluster/jobs/batch.py`),
submitted through Ray's job submission API. `/api/v1/batch` stays for small inputs answered
in the request.

- `POST /api/v1/jobs/batch`: a JSONL upload (multipart field `file`, form fields `model`,
  `max_tokens`, `temperature`) or a JSON body of `prompts`; 202 with the job.
- `GET /api/v1/jobs` (own; admins see all), `GET /api/v1/jobs/{id}` (Ray's status,
  progress = result lines / input lines, a tail of the job's log), `POST /api/v1/jobs/{id}/stop`,
  `GET /api/v1/jobs/{id}/results` (the results JSONL, one line per input line, in order).

Role: submitting takes `user` (the model caller), like chat: a batch runs models, and a job
is no more than the requests a user could make one after another; administration is not
needed to run one. A job belongs to its submitter: others get 404, admins see and stop all.

Budget: the caller must have tokens-per-minute budget left to submit (429 otherwise). The
job's tokens are not charged to that per-minute budget up front, because they are not spent
in a minute: a job is bounded instead, by `batch_job_max_lines` lines (and the upload by
`max_body_bytes`), `max_tokens` per line (<= 8192), and `batch_job_concurrency` requests in
flight, so a job's rate is at most that many requests at a time on the shared model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from sutazai.api.deps import ModelCallerDep, PageDep, ServicesDep, UserDep, ViewerDep
from sutazai.api.uploads import read_capped
from sutazai.auth.principal import Principal
from sutazai.errors import InvalidInput, NotFound, Unavailable
from sutazai.jobs import BatchJobs, JobState, batch_entrypoint
from sutazai.schemas.common import Page
from sutazai.schemas.jobs import BatchJobCreate, BatchJobOut, JobProgress
from sutazai.services import Services
from sutazai.storage.jobs import BatchJob, BatchJobStore

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {
            "application/json": {"schema": BatchJobCreate.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "JSONL: {id, prompt|messages}"},
                        "model": {"type": "string"},
                        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 8192},
                        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                    },
                }
            },
        },
        "required": True,
    }
}


def batch_jobs(services: Services) -> BatchJobs:
    """The replica's job submission client (one per replica, made on first use)."""
    jobs = getattr(services, "batch_jobs", None)
    if jobs is None:
        jobs = BatchJobs(services.settings)
        services.batch_jobs = jobs  # type: ignore[attr-defined]
    return jobs


def _owner_filter(caller: Principal) -> uuid.UUID | None:
    return None if caller.effective_role == "admin" else caller.user_id


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for raw in f if raw.strip())


def _time(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


async def _out(job: BatchJob, state: JobState | None, log_tail: str | None = None) -> BatchJobOut:
    done = await asyncio.to_thread(_count_lines, Path(job.output_path))
    return BatchJobOut(
        id=job.id,
        model=job.model,
        status=state.status if state else "UNKNOWN",
        message=state.message if state else "the cluster does not know this job (restarted?)",
        progress=JobProgress(done=done, total=job.lines, fraction=round(done / job.lines, 4) if job.lines else 1.0),
        created_at=job.created_at,
        start_time=_time(state.start_time_ms) if state else None,
        end_time=_time(state.end_time_ms) if state else None,
        results_url=f"/api/v1/jobs/{job.id}/results",
        log_tail=log_tail,
    )


async def _job_or_404(services: Services, job_id: str, caller: Principal) -> BatchJob:
    job = await BatchJobStore(services.pool).get(job_id, _owner_filter(caller))
    if job is None:
        raise NotFound.of("job")
    return job


async def _ray(call: Any) -> Any:
    """A job server call; it being unreachable is a 503, not a 500."""
    try:
        return await call
    except (ConnectionError, OSError, RuntimeError) as exc:
        raise Unavailable(f"the Ray job server is unavailable: {exc}"[:300], 2, code="job_server_unavailable") from exc


async def _submission(request: Request, limit: int) -> tuple[bytes, BatchJobCreate | None, dict[str, Any]]:
    """(JSONL input, the JSON body or None, sampling/model fields) from either body kind."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidInput("the multipart field 'file' (JSONL) is missing", details=[{"loc": ["body", "file"]}])
            data = await read_capped(upload, limit)
            fields = {k: form.get(k) for k in ("model", "max_tokens", "temperature") if form.get(k) not in (None, "")}
        try:
            options = BatchJobCreate.model_validate({"prompts": ["-"], **fields})
        except ValidationError as exc:
            details = exc.errors(include_url=False, include_context=False)
            raise InvalidInput("invalid form fields", details=details) from None
        return data, None, options.model_dump(exclude={"prompts"})
    try:
        body = BatchJobCreate.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidInput("invalid batch job", details=exc.errors(include_url=False, include_context=False)) from None
    lines = "".join(
        json.dumps({"id": str(i), "prompt": p}, ensure_ascii=False) + "\n" for i, p in enumerate(body.prompts)
    )
    return lines.encode(), body, body.model_dump(exclude={"prompts"})


@router.post("/batch", status_code=202, response_model=BatchJobOut, openapi_extra=_UPLOAD_BODY)
async def submit_batch_job(request: Request, caller: ModelCallerDep, services: ServicesDep) -> JSONResponse:
    """Store the input under jobs_dir/<job id>/input.jsonl and submit the batch entrypoint as a
    Ray job; 202 with the job (Location: its URL). Poll it for status and progress."""
    settings = services.settings
    await caller.check_budget()
    data, _, options = await _submission(request, settings.max_body_bytes)
    lines = sum(1 for raw in data.splitlines() if raw.strip())
    if lines == 0:
        raise InvalidInput("the input has no lines", code="empty_batch")
    if lines > settings.batch_job_max_lines:
        raise InvalidInput(
            f"at most {settings.batch_job_max_lines} lines a job; this has {lines}", code="too_many_lines"
        )
    model = services.inference.resolve(options.get("model")).spec.name  # 404 for a model not served

    job_id = f"batch-{uuid.uuid4().hex}"
    folder = settings.jobs_dir / job_id
    input_path, output_path = folder / "input.jsonl", folder / "results.jsonl"
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(input_path.write_bytes, data)
    store = BatchJobStore(services.pool)
    principal = caller.principal
    try:
        job = await store.create(
            job_id,
            principal.user_id,
            model=model,
            input_path=str(input_path),
            output_path=str(output_path),
            lines=lines,
            max_tokens=options.get("max_tokens"),
        )
        entrypoint = batch_entrypoint(
            input_path,
            output_path,
            model,
            max_tokens=options.get("max_tokens"),
            temperature=options.get("temperature"),
            concurrency=settings.batch_job_concurrency,
            app_name=settings.app_name,
        )
        metadata = {"kind": "sutazai-batch", "owner": str(principal.user_id), "model": model}
        await _ray(batch_jobs(services).submit(job_id, entrypoint, metadata))
    except BaseException:
        with contextlib.suppress(Exception):
            await store.delete(job_id)
        await asyncio.to_thread(shutil.rmtree, folder, True)
        raise
    state = JobState("PENDING", None, None, None)
    body = (await _out(job, state)).model_dump(mode="json")
    return JSONResponse(body, status_code=202, headers={"Location": f"/api/v1/jobs/{job_id}"})


@router.get("", response_model=Page[BatchJobOut])
async def list_jobs(caller: ViewerDep, services: ServicesDep, page: PageDep) -> Page[BatchJobOut]:
    """The caller's jobs (every job for an admin), newest first."""
    jobs, total = await BatchJobStore(services.pool).list(_owner_filter(caller), page.limit, page.offset)
    states = await _ray(batch_jobs(services).states()) if jobs else {}
    items = [await _out(job, states.get(job.id)) for job in jobs]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{job_id}", response_model=BatchJobOut)
async def get_job(job_id: str, caller: ViewerDep, services: ServicesDep) -> BatchJobOut:
    """Status from Ray, progress from the results file, and the last lines of the job's log."""
    job = await _job_or_404(services, job_id, caller)
    jobs = batch_jobs(services)
    state = await _ray(jobs.state(job.id))
    tail = await _ray(jobs.log_tail(job.id)) if state is not None else None
    return await _out(job, state, tail)


@router.post("/{job_id}/stop", response_model=BatchJobOut)
async def stop_job(job_id: str, caller: UserDep, services: ServicesDep) -> BatchJobOut:
    """Ask Ray to stop the job (a no-op for one that ended); its results so far stay downloadable."""
    job = await _job_or_404(services, job_id, caller)
    jobs = batch_jobs(services)
    state = await _ray(jobs.state(job.id))
    if state is not None and state.status not in ("STOPPED", "SUCCEEDED", "FAILED"):
        await _ray(jobs.stop(job.id))
        state = await _ray(jobs.state(job.id))
    return await _out(job, state)


@router.get("/{job_id}/results", response_class=Response, responses={200: {"content": {"application/jsonl": {}}}})
async def download_results(job_id: str, caller: ViewerDep, services: ServicesDep) -> Response:
    """The results JSONL so far (complete once the job SUCCEEDED); empty before the first line."""
    job = await _job_or_404(services, job_id, caller)
    path = Path(job.output_path)
    headers = {"Content-Disposition": f'attachment; filename="{job.id}.jsonl"', "X-Content-Type-Options": "nosniff"}
    if not path.exists():
        return Response(content=b"", media_type="application/jsonl", headers=headers)
    return FileResponse(path, media_type="application/jsonl", headers=headers)
