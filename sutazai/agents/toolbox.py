"""The agent loop's real adapters: MCP tools through the gateway, model turns through a model deployment.

- `discover_tools`: the tools an agent definition names, as the gateway lists them for the
  task's owner (role and user), as `AgentTool`s.
- `GatewayTools` (`ToolRunner`): a call through `MCPGateway.execute`. A refusal of the call
  (arguments, a tool not allowed, an unknown tool) is an error result the model sees and may
  correct; a server that is down raises `Unavailable` (the task is retried).
- `ServeModel` (`AgentModel`): one generation on a `ModelClient`, engine errors mapped as the
  ingress maps them (back-pressure, a replica down -> `Unavailable`; a refused request -> `BadRequest`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from sutazai.agents.loop import AgentTool, ModelReply, ToolOutcome, ToolRunner
from sutazai.errors import Forbidden, InvalidInput, NotFound, SutazaiError
from sutazai.inference import InferenceService, ModelClient, serve_failure
from sutazai.mcp.gateway import MCPGateway
from sutazai.schemas.agents import AgentDefinition, AgentSampling
from sutazai.schemas.engine import ChatMessage
from sutazai.schemas.retrieval import SearchHit

DEFAULT_RETRY_AFTER_S = 2

# The built-in tool `documents/search`: the task owner's own documents, searched by the runner.
DOCUMENTS_SERVER = "documents"
DOCUMENTS_TOOL: dict[str, Any] = {
    "name": "search_documents",
    "description": "Search the user's uploaded documents; returns the best matching excerpts and their files.",
    "input_schema": {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 120},  # keeps a small model from rambling
            "top_k": {"type": "integer", "minimum": 1, "maximum": 10},
        },
        "required": ["query"],
    },
}
DocumentSearch = Callable[[str, int], Awaitable[list[SearchHit]]]


class DocumentTools:
    """`ToolRunner` for the built-in documents tool; every other server goes to `others`."""

    def __init__(self, search: DocumentSearch | None, others: ToolRunner | None) -> None:
        self.search = search
        self.others = others

    async def call(self, server: str, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        if server != DOCUMENTS_SERVER:
            if self.others is None:
                return ToolOutcome(f"no MCP server {server!r} is reachable", True)
            return await self.others.call(server, tool, arguments)
        if self.search is None:
            return ToolOutcome("document search is not available here (no embedding model)", True)
        query, top_k = str(arguments.get("query") or ""), int(arguments.get("top_k") or 4)
        if not query.strip():
            return ToolOutcome("query must not be empty", True)
        hits = await self.search(query, max(1, min(top_k, 10)))
        if not hits:
            return ToolOutcome("no matching excerpts in the user's documents", False)
        lines = [
            f"[{n}] ({h.filename}, chunk {h.chunk_index}) {' '.join(h.text.split())}" for n, h in enumerate(hits, 1)
        ]
        return ToolOutcome("\n".join(lines), False)


async def discover_tools(
    gateway: MCPGateway | None, definition: AgentDefinition, *, role: str, user: str
) -> list[AgentTool]:
    """The agent's tools, in the order its definition names their servers.

    A server the gateway does not serve, or a tool named explicitly that its server does not have
    (or does not allow), is `InvalidInput`: the definition cannot run, retrying will not help. A role
    that may not use a server is `Forbidden`; a server that is down is `Unavailable`.
    """
    found: list[tuple[str, dict[str, Any]]] = []
    for server in definition.servers():
        if server == DOCUMENTS_SERVER:
            found.append((server, DOCUMENTS_TOOL))
            continue
        if gateway is None:
            raise InvalidInput(f"agent {definition.name!r} uses MCP server {server!r} but MCP is not running")
        try:
            listed = await gateway.tools(server, role, user=user)
        except NotFound as exc:
            raise InvalidInput(f"agent {definition.name!r}: {exc.message}") from None
        config = gateway.config.mcp_servers[server]
        names = {t["name"] for t in listed if config.allows(t["name"])}
        for pattern in definition.tools:
            wanted_server, wanted = pattern.split("/", 1)
            if wanted_server == server and wanted != "*" and wanted not in names:
                known = ", ".join(sorted(names)) or "none"
                raise InvalidInput(
                    f"agent {definition.name!r} uses tool {pattern!r}, which MCP server {server!r} "
                    f"does not have or does not allow (tools: {known})"
                )
        found.extend((server, t) for t in listed if t["name"] in names and definition.allows(server, t["name"]))

    counts = Counter(t["name"] for _, t in found)
    return [
        AgentTool(
            name=t["name"] if counts[t["name"]] == 1 else f"{server}__{t['name']}",
            server=server,
            tool=t["name"],
            description=t.get("description") or "",
            parameters=t.get("input_schema") or {"type": "object", "properties": {}},
        )
        for server, t in found
    ]


class GatewayTools:
    """`ToolRunner` over the MCP gateway, calling as the task's owner (`role`, `user` as its UUID hex)."""

    def __init__(self, gateway: MCPGateway, *, role: str, user: str) -> None:
        self.gateway = gateway
        self.role = role
        self.user = user

    async def call(self, server: str, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        try:
            result = await self.gateway.execute(server, tool, arguments, self.role, user=self.user)
        except (InvalidInput, Forbidden, NotFound) as exc:
            return ToolOutcome(exc.message, True)
        return ToolOutcome(result_content(result), bool(result.get("is_error")))


def result_content(result: dict[str, Any]) -> str:
    """A gateway result as text: its text items joined; structured content (or the raw items) when it has no text."""
    text = result.get("text")
    if text is None:
        text = "\n".join(c.get("text", "") for c in result.get("content") or [] if c.get("type") == "text")
    if text:
        return str(text)
    if result.get("structured_content") is not None:
        return json.dumps(result["structured_content"], ensure_ascii=False)
    content = result.get("content") or []
    return json.dumps(content, ensure_ascii=False) if content else ""


class _Sampling(NamedTuple):
    """What `InferenceService.build_request` reads of a request's sampling."""

    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    stop: list[str]
    seed: int | None


class ServeModel:
    """`AgentModel` over a model deployment. `request_id` (the task's, say) goes into each request's id."""

    def __init__(
        self, client: ModelClient, *, request_id: str | None = None, retry_after_s: int = DEFAULT_RETRY_AFTER_S
    ) -> None:
        self.client = client
        self.request_id = request_id
        self.retry_after_s = retry_after_s
        self.turns = 0

    async def complete(
        self, messages: list[ChatMessage], json_schema: dict[str, Any] | None, sampling: AgentSampling
    ) -> ModelReply:
        self.turns += 1
        request = InferenceService.build_request(
            self.client.spec,
            _Sampling(sampling.max_tokens, sampling.temperature, sampling.top_p, [], None),
            messages=messages,
            request_id=f"{self.request_id}-{self.turns}" if self.request_id else None,
            json_schema=json_schema,
        )
        try:
            result = await self.client.generate(request)
        except Exception as exc:
            raise self._error(exc) from None
        return ModelReply(result.text, result.usage, result.finish_reason)

    def _error(self, exc: BaseException) -> SutazaiError:
        return serve_failure(exc, f"model {self.client.spec.name}", self.retry_after_s)
