"""One attempt of a task, as a runner actor runs it: the agent loop (or an orchestration)
with its lease kept by heartbeats, its events recorded, and its outcome stored once.

Outcomes: an answer -> succeeded; max steps, timeout, or a refusal that a retry cannot
fix (unknown model or tool, a disabled owner) -> failed; a cancellation -> cancelled.
Anything else (a model at capacity, a dead MCP server, Postgres gone) propagates: the
dispatcher ends the attempt and the task is retried with backoff, resuming from its
recorded steps. An attempt that lost its lease writes nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from sutazai.agents.loop import AgentModel, MaxStepsReached, OutputTruncated, ToolRunner, run_agent
from sutazai.agents.toolbox import DocumentSearch, DocumentTools, GatewayTools, ServeModel, discover_tools
from sutazai.documents.files import DocumentFiles
from sutazai.documents.indexing import Embedder, index_document
from sutazai.documents.retrieval import search_documents
from sutazai.errors import BadRequest, Forbidden, InvalidInput, NotFound, Unavailable, UnsupportedMedia
from sutazai.inference import ModelClient
from sutazai.mcp.gateway import MCPGateway
from sutazai.schemas.agents import AgentDefinition
from sutazai.schemas.engine import ChatMessage, Usage
from sutazai.schemas.retrieval import SearchHit
from sutazai.settings import Settings
from sutazai.storage.agents import AgentStore
from sutazai.storage.documents import DocumentStore
from sutazai.storage.tasks import LeaseLost, NewTask, Task, TaskStatus, TaskStore
from sutazai.vectors.store import VectorStore

logger = logging.getLogger("sutazai.agents.attempt")

PERMANENT = (InvalidInput, NotFound, Forbidden, BadRequest, UnsupportedMedia)  # a retry would meet them again
CHILD_POLL_S = 0.25


@dataclass
class DocumentIndexing:
    """What an 'index' task needs: the documents' rows and files, the embedder, the vectors."""

    documents: DocumentStore
    files: DocumentFiles
    embedder: Embedder
    vectors: VectorStore
    settings: Settings


@dataclass
class AttemptContext:
    """What a runner holds for every attempt it runs."""

    store: TaskStore
    agents: AgentStore
    models: dict[str, ModelClient]
    default_model: str | None
    gateway: MCPGateway | None
    lease_s: float
    max_attempts: int
    retry_after_s: int = 2
    # Indexing documents (tasks of kind 'index'); None where the app has no embedder.
    indexing: DocumentIndexing | None = None
    jobs: dict[str, asyncio.Task[Any]] = field(default_factory=dict)

    def model(self, name: str | None, request_id: str) -> AgentModel:
        client = self.models.get(name or self.default_model or "")
        if client is None:
            raise NotFound(f"model {name or self.default_model!r} is not served", code="model_not_found")
        return ServeModel(client, request_id=request_id, retry_after_s=self.retry_after_s)


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


async def run_attempt(ctx: AttemptContext, task: Task) -> TaskStatus | None:
    """Runs the attempt to its end; returns the status stored (None: the lease was lost)."""
    job = asyncio.current_task()
    assert job is not None
    lost = asyncio.Event()
    heartbeat = asyncio.create_task(_keep_lease(ctx, task, job, lost))
    usage = Usage()
    try:
        try:
            if task.kind == "orchestrate":
                result, usage = await _orchestrate(ctx, task)
            elif task.kind == "index":
                result, usage = await _index(ctx, task)
            else:
                result, usage = await _run_agent_task(ctx, task)
        except asyncio.CancelledError:
            if lost.is_set():
                return None
            await _finish(ctx, task, "cancelled", error=_error("cancelled", "cancelled by request"))
            return "cancelled"
        except OutputTruncated as exc:
            usage = exc.usage
            await _finish(ctx, task, "failed", error=_error("output_truncated", str(exc)), usage=usage)
            return "failed"
        except MaxStepsReached as exc:
            usage = exc.usage
            last = exc.last_text[:2000]
            await _finish(ctx, task, "failed", error=_error("max_steps", str(exc)), usage=usage, result={"last": last})
            return "failed"
        except TimeoutError:
            await _finish(ctx, task, "failed", error=_error("timeout", "the agent ran past its timeout_s"))
            return "failed"
        except PERMANENT as exc:
            await _finish(ctx, task, "failed", error=_error(exc.code, exc.message))
            return "failed"
        status: TaskStatus = "failed" if result.get("failed") else "succeeded"
        await _finish(ctx, task, status, result=result, usage=usage)
        return status
    except LeaseLost:
        logger.warning("task %s attempt %d lost its lease; stopping without writing", task.id, task.attempts)
        return None
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError, LeaseLost):
            await heartbeat


async def _finish(ctx: AttemptContext, task: Task, status: TaskStatus, **outcome: Any) -> None:
    if "usage" in outcome:
        outcome["usage"] = outcome["usage"].model_dump()
    if not await ctx.store.finish(task.id, task.attempts, status, **outcome):
        raise LeaseLost(str(task.id))


async def _keep_lease(ctx: AttemptContext, task: Task, job: asyncio.Task[Any], lost: asyncio.Event) -> None:
    """Renews the lease a few times per lease; cancels the attempt when cancellation was asked
    (the dispatcher usually gets there first) or the lease was lost."""
    while True:
        await asyncio.sleep(ctx.lease_s / 3)
        try:
            cancel = await ctx.store.heartbeat(task.id, task.attempts, ctx.lease_s)
        except LeaseLost:
            lost.set()
            job.cancel()
            return
        except Exception as exc:  # Postgres blips: the next beat may work; the lease has slack
            logger.warning("heartbeat of task %s failed: %s", task.id, exc)
            continue
        if cancel:
            job.cancel()
            return


def _recorder(ctx: AttemptContext, task: Task) -> Any:
    async def record(type: str, data: dict[str, Any]) -> None:
        await ctx.store.record(task.id, task.attempts, type, data)

    return record


async def _past(ctx: AttemptContext, task: Task) -> list[tuple[str, dict[str, Any]]]:
    """The steps earlier attempts recorded, for the loop to resume from."""
    events = await ctx.store.events(task.id, limit=100_000)
    return [(e.type, e.data) for e in events if 0 < e.attempt < task.attempts]


async def _role(ctx: AttemptContext, task: Task) -> str:
    role = await ctx.store.owner_role(task)
    if role is None:
        raise Forbidden("the task's owner is disabled or deleted", code="owner_disabled")
    return role


async def _tools(ctx: AttemptContext, definition: AgentDefinition, task: Task) -> tuple[list[Any], ToolRunner]:
    """The agent's tools as the model sees them, and what runs their calls: MCP servers through
    the gateway, the built-in `documents/search` over the task owner's own documents."""
    if not definition.tools:
        return [], DocumentTools(None, None)
    role, user = await _role(ctx, task), task.owner_id.hex
    tools = await discover_tools(ctx.gateway, definition, role=role, user=user)
    mcp = GatewayTools(ctx.gateway, role=role, user=user) if ctx.gateway is not None else None
    return tools, DocumentTools(_document_search(ctx, task), mcp)


def _document_search(ctx: AttemptContext, task: Task) -> DocumentSearch | None:
    parts = ctx.indexing
    if parts is None:
        return None

    async def search(query: str, top_k: int) -> list[SearchHit]:
        return await search_documents(
            store=parts.documents,
            embedder=parts.embedder,
            vectors=parts.vectors,
            owner_id=task.owner_id,
            query=query,
            top_k=top_k,
        )

    return search


async def _run_agent_task(ctx: AttemptContext, task: Task) -> tuple[dict[str, Any], Usage]:
    if task.definition is None:
        raise InvalidInput("the task has no agent definition")
    definition = AgentDefinition.model_validate(task.definition)
    await _role(ctx, task)
    tools, runner = await _tools(ctx, definition, task)
    model = ctx.model(definition.model, str(task.id))
    past = await _past(ctx, task)
    async with asyncio.timeout(definition.timeout_s):
        result = await run_agent(definition, task.input, tools, model, runner, _recorder(ctx, task), past)
    return {"answer": result.answer, "steps": result.steps}, result.usage


# ---- indexing ------------------------------------------------------------


async def _index(ctx: AttemptContext, task: Task) -> tuple[dict[str, Any], Usage]:
    """Index an uploaded document; each batch is a `progress` event and renews nothing (the
    heartbeat does). A document deleted before its turn is nothing to do."""
    if ctx.indexing is None:
        raise Unavailable("no embedding model is deployed: documents cannot be indexed", ctx.retry_after_s)
    parts = ctx.indexing
    document = await parts.documents.find(uuid.UUID(task.params["document_id"]))
    if document is None:
        return {"document_id": task.params["document_id"], "skipped": "the document was deleted"}, Usage()
    data = await parts.files.read(document.owner_id, document.id)

    async def progress(done: int, total: int) -> None:
        await ctx.store.record(task.id, task.attempts, "progress", {"chunks_indexed": done, "chunks_total": total})

    chunks = await index_document(
        document,
        data,
        store=parts.documents,
        embedder=parts.embedder,
        vectors=parts.vectors,
        settings=parts.settings,
        progress=progress,
    )
    return {"document_id": str(document.id), "chunks": chunks}, Usage()


# ---- orchestration -------------------------------------------------------

PLAN_PROMPT = (
    "Split the user's request into sub-tasks for these agents and answer with JSON "
    '{{"subtasks": [{{"agent": <name>, "input": <what that agent should do>}}]}}.\nAgents:\n{agents}'
)
PLAN_INPUT_CHARS = 300  # one sub-task's instructions
COMBINE_PROMPT = "Combine the results of the sub-tasks below into one answer to the user's request."


def _plan_schema(names: list[str], most: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "subtasks": {
                "type": "array",
                "minItems": 1,
                "maxItems": most,
                "items": {
                    "type": "object",
                    "properties": {
                        "agent": {"enum": names},
                        "input": {"type": "string", "minLength": 1, "maxLength": PLAN_INPUT_CHARS},
                    },
                    "required": ["agent", "input"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["subtasks"],
        "additionalProperties": False,
    }


async def _definition(ctx: AttemptContext, name: str) -> AgentDefinition:
    stored = await ctx.agents.get(name)
    if stored is None:
        raise NotFound(f"agent {name!r} not found", code="agent_not_found")
    return stored.definition()


async def _plan(
    ctx: AttemptContext, task: Task, names: list[str], coordinator: AgentDefinition
) -> tuple[list[dict], Usage]:
    """The coordinator's sub-tasks (recorded as a `plan` event, reused on retry)."""
    for type_, data in await _past(ctx, task):
        if type_ == "plan":
            return data["subtasks"], Usage.model_validate(data.get("usage") or {})
    lines = []
    for name in names:
        lines.append(f"- {name}: {(await _definition(ctx, name)).description}")
    plan_prompt = PLAN_PROMPT.format(agents="\n".join(lines))
    messages = [
        ChatMessage(role="system", content=f"{coordinator.system_prompt}\n\n{plan_prompt}"),
        ChatMessage(role="user", content=task.input),
    ]
    most = int(task.params.get("max_subtasks", 8))
    # Room for the whole plan: a plan cut by max_tokens is no plan.
    room = most * (PLAN_INPUT_CHARS // 3 + 16) + 16
    sampling = coordinator.sampling.model_copy(update={"max_tokens": max(coordinator.sampling.max_tokens or 0, room)})
    reply = await ctx.model(coordinator.model, f"{task.id}-plan").complete(
        messages, _plan_schema(names, most), sampling
    )
    try:
        subtasks = json.loads(reply.text)["subtasks"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InvalidInput(f"the coordinator's plan is not valid JSON: {reply.text[:200]!r}", code="bad_plan") from None
    await ctx.store.record(task.id, task.attempts, "plan", {"subtasks": subtasks, "usage": reply.usage.model_dump()})
    return subtasks, reply.usage


async def _orchestrate(ctx: AttemptContext, task: Task) -> tuple[dict[str, Any], Usage]:
    """Children made up front (named agents) or planned here by the coordinator; waits for them,
    recording their progress as `child` events, then combines their results."""
    usage = Usage()
    coordinator = task.params.get("coordinator")
    coordinator_def = await _definition(ctx, coordinator) if coordinator else None
    children = await ctx.store.children(task.id)
    if coordinator_def is not None and not children:
        subtasks, plan_usage = await _plan(ctx, task, list(task.params["agents"]), coordinator_def)
        usage = _add(usage, plan_usage)
        for i, sub in enumerate(subtasks):
            definition = await _definition(ctx, sub["agent"])
            await ctx.store.add_child(
                task.id,
                NewTask(
                    owner_id=task.owner_id,
                    kind="agent",
                    agent=definition.name,
                    definition=definition.model_dump(),
                    input=sub["input"],
                    idempotency_key=f"{task.id}:{i}",
                    priority=task.priority,
                    max_attempts=ctx.max_attempts,
                ),
            )
        children = await ctx.store.children(task.id)
    children = await _wait_for_children(ctx, task, children)
    results = [
        {
            "id": str(c.id),
            "agent": c.agent,
            "status": c.status,
            "answer": (c.result or {}).get("answer"),
            "error": c.error if c.status != "succeeded" else None,
        }
        for c in children
    ]
    for c in children:
        usage = _add(usage, Usage.model_validate(c.usage or {}))
    if not any(r["status"] == "succeeded" for r in results):
        return {"children": results, "failed": True, "answer": None}, usage
    if coordinator_def is None:
        answer = "\n\n".join(f"[{r['agent']}] {r['answer']}" for r in results if r["status"] == "succeeded")
        return {"children": results, "answer": answer}, usage
    parts = "\n\n".join(f"[{r['agent']}] {r['answer'] or r['error']}" for r in results)
    messages = [
        ChatMessage(role="system", content=f"{coordinator_def.system_prompt}\n\n{COMBINE_PROMPT}"),
        ChatMessage(role="user", content=f"Request: {task.input}\n\nResults:\n{parts}"),
    ]
    reply = await ctx.model(coordinator_def.model, f"{task.id}-combine").complete(
        messages, None, coordinator_def.sampling
    )
    await ctx.store.record(task.id, task.attempts, "combine", {"text": reply.text, "usage": reply.usage.model_dump()})
    return {"children": results, "answer": reply.text}, _add(usage, reply.usage)


async def _wait_for_children(ctx: AttemptContext, task: Task, children: list[Task]) -> list[Task]:
    """Until every child ended; each child's new events appear in the parent as `child` events."""
    seen = {c.id: 0 for c in children}
    for type_, data in await _past(ctx, task):
        if type_ == "child" and data.get("child_id"):
            cid = uuid.UUID(data["child_id"])
            seen[cid] = max(seen.get(cid, 0), int(data.get("seq", 0)))
    agents = {c.id: c.agent for c in children}
    while True:
        for event in await ctx.store.events_of(list(seen), seen):
            seen[event.task_id] = event.seq
            await ctx.store.record(
                task.id,
                task.attempts,
                "child",
                {
                    "child_id": str(event.task_id),
                    "agent": agents.get(event.task_id),
                    "seq": event.seq,
                    "type": event.type,
                },
            )
        children = await ctx.store.children(task.id)
        if all(c.terminal for c in children) and all(seen.get(c.id, 0) >= c.event_seq for c in children):
            return children
        await asyncio.sleep(CHILD_POLL_S)


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(
        prompt_tokens=a.prompt_tokens + b.prompt_tokens, completion_tokens=a.completion_tokens + b.completion_tokens
    )
