"""Durable tasks: submit (stored before the 202), read, list, cancel, follow their events
over SSE (resumable with Last-Event-ID), run an agent, orchestrate several.

A task belongs to its submitter; admins see and cancel everyone's. Submitting runs
models, so it takes the user role; reading takes viewer.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse
from sse_starlette import ServerSentEvent

from sutazai.api.deps import PageDep, ServicesDep, UserDep, ViewerDep
from sutazai.api.sse import SSE_RESPONSES, event, sse_response
from sutazai.auth.principal import Principal
from sutazai.errors import InvalidInput, NotFound
from sutazai.schemas.common import Page
from sutazai.schemas.tasks import AgentRun, OrchestrateRequest, TaskCreate, TaskEventOut, TaskOut, TaskStatus
from sutazai.services import Services
from sutazai.storage.tasks import NewTask, Task

router = APIRouter(tags=["tasks"])

WAKE_S = 1.0  # a waiter re-reads at least this often while notifications cannot reach it
# ... and this often while they can: a notification (or the hub's wake-all after a reconnect)
# wakes it at once, so re-reading every second only costs Postgres two queries a second per
# idle stream (1,000 idle streams were 2,000 queries/s).
LISTENING_WAKE_S = 15.0


def _wake_s(services: Services) -> float:
    conn = getattr(services.task_events, "_conn", None)  # the hub's LISTEN connection
    return LISTENING_WAKE_S if conn is not None and not conn.is_closed() else WAKE_S


def _owner_filter(caller: Principal) -> uuid.UUID | None:
    """Admins act on every task, others on their own."""
    return None if caller.effective_role == "admin" else caller.user_id


def task_out(task: Task, children: list[Task] | None = None) -> TaskOut:
    return TaskOut(
        **task.model_dump(include=set(TaskOut.model_fields) - {"events", "children"}),
        events=task.event_seq,
        children=[c.id for c in children] if children is not None else None,
    )


async def _task_or_404(services: Services, task_id: uuid.UUID, caller: Principal) -> Task:
    task = await services.tasks.get(task_id, _owner_filter(caller))
    if task is None:
        raise NotFound.of("task")
    return task


async def _out(services: Services, task: Task) -> TaskOut:
    children = await services.tasks.children(task.id) if task.kind == "orchestrate" else None
    return task_out(task, children)


async def _wait_until_ended(services: Services, task: Task, timeout_s: float) -> Task:
    deadline = time.monotonic() + min(timeout_s, services.settings.task_wait_max_s)
    with services.task_events.watch(str(task.id)) as changed:
        while not task.terminal and (left := deadline - time.monotonic()) > 0:
            await services.task_events.wait(changed, min(left, WAKE_S))
            task = await services.tasks.get(task.id) or task
    return task


async def _answer(services: Services, task: Task, created: bool, wait: bool, wait_timeout_s: float) -> JSONResponse:
    """202 (Location: the task) while it runs, 200 once it ended (waited for, or a replayed submission)."""
    if wait:
        task = await _wait_until_ended(services, task, wait_timeout_s)
    body = (await _out(services, task)).model_dump(mode="json")
    headers = {"Location": f"/api/v1/tasks/{task.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=200 if task.terminal else 202, headers=headers)


async def _agent_task(services: Services, caller: Principal, agent: str, body: AgentRun | TaskCreate) -> NewTask:
    stored = await services.agents.get(agent)
    if stored is None:
        raise NotFound(f"agent {agent!r} not found; see GET /api/v1/agents", code="agent_not_found")
    return NewTask(
        owner_id=caller.user_id,
        kind="agent",
        agent=agent,
        definition=stored.definition().model_dump(),
        input=body.input,
        idempotency_key=body.idempotency_key,
        priority=body.priority,
        max_attempts=services.settings.task_max_attempts,
    )


_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"model": TaskOut, "description": "stored and queued (or still running after `wait`)"}
}


@router.post("/api/v1/tasks", response_model=TaskOut, status_code=202, responses=_ACCEPTED)
async def submit_task(body: TaskCreate, caller: UserDep, services: ServicesDep) -> JSONResponse:
    """Stored in Postgres before this answers; the same `idempotency_key` returns the same task."""
    task, created = await services.tasks.submit(await _agent_task(services, caller, body.agent, body))
    return await _answer(services, task, created, body.wait, body.wait_timeout_s)


@router.post("/api/v1/agents/{name}/run", response_model=TaskOut, status_code=202, responses=_ACCEPTED, tags=["agents"])
async def run_agent(name: str, body: AgentRun, caller: UserDep, services: ServicesDep) -> JSONResponse:
    """Runs the agent as a task; `wait: true` answers 200 with its result when it ends in time."""
    task, created = await services.tasks.submit(await _agent_task(services, caller, name, body))
    return await _answer(services, task, created, body.wait, body.wait_timeout_s)


@router.post("/api/v1/orchestrate", response_model=TaskOut, status_code=202, responses=_ACCEPTED)
async def orchestrate(body: OrchestrateRequest, caller: UserDep, services: ServicesDep) -> JSONResponse:
    """A parent task whose children are the named agents' tasks (or, with a coordinator, the
    sub-tasks it plans); its events show the children's progress; cancelling it cancels them."""
    definitions = {}
    for name in [*body.agents, *([body.coordinator] if body.coordinator else [])]:
        stored = await services.agents.get(name)
        if stored is None:
            raise NotFound(f"agent {name!r} not found; see GET /api/v1/agents", code="agent_not_found")
        definitions[name] = stored.definition().model_dump()
    parent = NewTask(
        owner_id=caller.user_id,
        kind="orchestrate",
        agent=body.coordinator,
        definition=definitions.get(body.coordinator) if body.coordinator else None,
        input=body.input,
        params={"agents": body.agents, "coordinator": body.coordinator, "max_subtasks": body.max_subtasks},
        idempotency_key=body.idempotency_key,
        priority=body.priority,
        max_attempts=services.settings.task_max_attempts,
    )
    children = (
        []
        if body.coordinator
        else [
            NewTask(
                owner_id=caller.user_id,
                kind="agent",
                agent=name,
                definition=definitions[name],
                input=body.input,
                priority=body.priority,
                max_attempts=services.settings.task_max_attempts,
            )
            for name in body.agents
        ]
    )
    task, _, created = await services.tasks.submit_family(parent, children)
    return await _answer(services, task, created, body.wait, body.wait_timeout_s)


@router.get("/api/v1/tasks", response_model=Page[TaskOut])
async def list_tasks(
    caller: ViewerDep, services: ServicesDep, page: PageDep, status: TaskStatus | None = None
) -> Page[TaskOut]:
    """Newest first: your own tasks (an admin's list has everyone's)."""
    items, total = await services.tasks.page(_owner_filter(caller), status=status, limit=page.limit, offset=page.offset)
    return Page(items=[task_out(t) for t in items], total=total, limit=page.limit, offset=page.offset)


@router.get("/api/v1/tasks/{task_id}", response_model=TaskOut)
async def get_task(task_id: uuid.UUID, caller: ViewerDep, services: ServicesDep) -> TaskOut:
    return await _out(services, await _task_or_404(services, task_id, caller))


@router.post("/api/v1/tasks/{task_id}/cancel", response_model=TaskOut)
async def cancel_task(task_id: uuid.UUID, caller: UserDep, services: ServicesDep) -> TaskOut:
    """A queued task is cancelled at once; a running one is stopped by its runner (within
    a second, `cancel_requested` meanwhile). Its unfinished children are cancelled too.
    409 when it already ended."""
    task = await services.tasks.cancel(task_id, _owner_filter(caller))
    return await _out(services, task)


@router.get("/api/v1/tasks/{task_id}/events", responses=SSE_RESPONSES, response_class=Response)
async def task_events(
    task_id: uuid.UUID,
    caller: ViewerDep,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[int | None, Query(ge=0, description="resume after this seq (as Last-Event-ID)")] = None,
) -> Response:
    """Server-sent events: the task's past events, then live ones until it ends. Each has
    `id: <seq>` and `event: <type>`; a client that reconnects with `Last-Event-ID` gets
    exactly the events after it."""
    task = await _task_or_404(services, task_id, caller)
    start = after if after is not None else _seq(last_event_id)
    return sse_response(_follow(services, task, start))


def _seq(last_event_id: str | None) -> int:
    if last_event_id is None or not last_event_id.strip():
        return 0
    try:
        seq = int(last_event_id.strip())
    except ValueError:
        raise InvalidInput("Last-Event-ID must be an event id (an integer seq) this stream sent") from None
    if seq < 0:
        raise InvalidInput("Last-Event-ID must not be negative")
    return seq


async def _follow(services: Services, task: Task, after: int) -> AsyncIterator[ServerSentEvent]:
    with services.task_events.watch(str(task.id)) as changed:
        while True:
            events = await services.tasks.events(task.id, after=after, limit=500)
            for e in events:
                out = TaskEventOut.model_validate(e.model_dump())
                yield ServerSentEvent(data=out.model_dump_json(), event=e.type, id=str(e.seq), sep="\n")
                after = e.seq
            if events:
                continue  # there may be more than one page
            current = await services.tasks.get(task.id)
            if current is None or (current.terminal and after >= current.event_seq):
                yield event({"status": current.status if current else "deleted"}, "end")
                return
            await services.task_events.wait(changed, _wake_s(services))
            await asyncio.sleep(0)
