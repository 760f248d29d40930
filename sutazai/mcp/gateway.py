"""What an ingress replica uses to reach the MCP process actors.

The gateway holds no server state of its own: the actors own the processes and
sessions. It knows the config (roles, timeouts), checks the caller's role and
the arguments against the tool's input schema before anything crosses to the
actor, and turns failures into the API's errors: 404 unknown server or tool,
403 role, 422 arguments, 503 (with Retry-After) when a server is down, restarting
or too slow. A tool that fails on its own is a normal result with `is_error`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import ray
from jsonschema import Draft202012Validator
from ray.exceptions import RayActorError, RayTaskError

from sutazai.errors import Forbidden, InvalidInput, NotFound, Unavailable
from sutazai.mcp.config import MCPConfig
from sutazai.mcp.errors import ServerUnavailable
from sutazai.settings import Settings

logger = logging.getLogger("sutazai.mcp.gateway")

ACTOR_SLACK_S = 5.0  # beyond a call's own timeout, for the hop to the actor


@dataclass
class _Listing:
    """A server's tools as of one start of it (generation), with compiled validators."""

    generation: int
    tools: dict[str, dict]
    validators: dict[str, Any] = field(default_factory=dict)

    def validator(self, tool: str) -> Any:
        if tool not in self.validators:
            schema = self.tools[tool].get("input_schema") or {"type": "object"}
            cls = jsonschema.validators.validator_for(schema, default=Draft202012Validator)
            try:
                cls.check_schema(schema)
                self.validators[tool] = cls(schema)
            except jsonschema.SchemaError as exc:  # the server's own problem: let it validate
                logger.warning("tool %r has an invalid input schema, not validated here: %s", tool, exc.message)
                self.validators[tool] = None
        return self.validators[tool]


def _cause(exc: BaseException) -> BaseException:
    """The exception raised inside the actor (Ray wraps it)."""
    return getattr(exc, "cause", None) or exc


class MCPGateway:
    """Routes tool listing and calls to the named MCP actors; see the module docstring."""

    def __init__(self, settings: Settings, config: MCPConfig, actors: dict[str, Any]) -> None:
        self.settings = settings
        self.config = config
        self.actors = actors  # server name -> ActorHandle, enabled servers only
        self._listings: dict[str, _Listing] = {}

    async def configure(self, values: dict[str, str], *, timeout_s: float = 30.0) -> None:
        """Hand every actor the current config; servers then start in the background.

        Returns once every actor has been reached (or `timeout_s`), not when every
        server is ready.
        """
        futures = {
            name: _as_future(actor.configure.remote(self.config.mcp_servers[name].model_dump(), values))
            for name, actor in self.actors.items()
        }
        if futures:
            await asyncio.wait(futures.values(), timeout=timeout_s)
        for name, future in futures.items():
            if not future.done():
                logger.warning("MCP actor for %r not reached within %g s; it may lack resources", name, timeout_s)
            elif (error := future.exception()) is not None:
                logger.warning("MCP actor for %r failed to configure: %s", name, _message(error))
        logger.info("MCP gateway connected to %d servers: %s", len(self.actors), ", ".join(self.actors) or "none")

    # ---- reading --------------------------------------------------------

    async def servers(self) -> list[dict]:
        """Every configured server with its status (disabled ones too), for GET /servers."""
        names = list(self.config.mcp_servers)
        statuses = await asyncio.gather(*(self._status(name) for name in names))
        return [
            {**status, "roles": self.config.mcp_servers[name].roles}
            for name, status in zip(names, statuses, strict=True)
        ]

    async def tools(self, name: str, role: str | None = None) -> list[dict]:
        """The server's tools (name, description, input_schema...), as listed at its last start.

        With a role, a caller who may not use the server may not see its tools either (403).
        """
        self._actor(name)
        if role is not None:
            self._check_role(name, role)
        return list((await self._listing(name)).tools.values())

    async def execute(
        self, server: str, tool: str, arguments: dict | None, role: str, *, timeout: float | None = None
    ) -> dict:
        """Call a tool for a caller with `role`. Raises NotFound, Forbidden, InvalidInput or
        Unavailable; a tool's own failure is a result."""
        actor = self._actor(server)
        config = self.config.mcp_servers[server]
        self._check_role(server, role)
        arguments = arguments if arguments is not None else {}
        listing = await self._listing(server)
        if tool not in listing.tools:
            listing = await self._listing(server, refresh=True)  # the server may have been upgraded
        if tool not in listing.tools:
            known = ", ".join(sorted(listing.tools)) or "none"
            raise NotFound(f"MCP server {server!r} has no tool {tool!r} (tools: {known})")
        _check_encodable(arguments)
        self._validate(server, tool, arguments, listing)

        timeout = timeout or config.call_timeout_s
        started = time.perf_counter()
        result = await self._ask(server, actor.call_tool.remote(tool, arguments, timeout), timeout + ACTOR_SLACK_S)
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        if result.pop("generation", listing.generation) != listing.generation:
            self._listings.pop(server, None)  # the server restarted: list its tools again next time
        return {"server": server, "tool": tool, **result, "latency_ms": latency_ms}

    async def health(self) -> dict[str, dict]:
        """Per enabled server: status, round-trip latency through actor and server (a ping), restarts."""
        timeout = self.settings.health_timeout_s

        async def one(name: str) -> dict:
            started = time.perf_counter()
            try:
                status = await asyncio.wait_for(_as_future(self.actors[name].health.remote(timeout)), timeout + 1)
            except Exception as exc:
                return {"status": "unreachable", "latency_ms": None, "error": _message(exc)}
            return {
                "status": status["status"],
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                "ping_ms": status.get("ping_ms"),
                "pid": status["pid"],
                "restarts": status["restarts"],
                "tools": status["tools"],
                "last_error": status["last_error"],
            }

        names = list(self.actors)
        return dict(zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True))

    # ---- admin ----------------------------------------------------------

    async def restart(self, name: str) -> dict:
        """Stop the server process and start it again; returns its status once ready (bounded wait)."""
        actor = self._actor(name)
        self._listings.pop(name, None)
        wait = self.config.mcp_servers[name].start_timeout_s
        return await self._ask(name, actor.restart.remote(wait), wait + ACTOR_SLACK_S)

    async def wait_ready(self, timeout: float = 60.0) -> dict[str, str]:
        """Wait until every enabled server is ready (or failed); returns name -> status."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = {s["name"]: s["status"] for s in await self.servers() if s["name"] in self.actors}
            if all(s in ("ready", "failed") for s in statuses.values()) or time.monotonic() > deadline:
                return statuses
            await asyncio.sleep(0.1)

    async def shutdown(self) -> None:
        """Stop every server and end its actor (detached actors outlive the app otherwise)."""

        async def one(name: str, actor: Any) -> None:
            try:
                await asyncio.wait_for(_as_future(actor.stop.remote()), 15)
            except Exception as exc:
                logger.warning("stopping MCP server %r: %s", name, _message(exc))
            ray.kill(actor, no_restart=True)

        await asyncio.gather(*(one(name, actor) for name, actor in self.actors.items()))

    # ---- helpers --------------------------------------------------------

    def _actor(self, name: str) -> Any:
        if name not in self.config.mcp_servers:
            known = ", ".join(sorted(self.config.mcp_servers)) or "none"
            raise NotFound(f"MCP server {name!r} not found (servers: {known})")
        if name not in self.actors:
            raise NotFound(f"MCP server {name!r} is disabled in the configuration")
        return self.actors[name]

    def _check_role(self, name: str, role: str) -> None:
        if role not in self.config.mcp_servers[name].roles:
            raise Forbidden(f"role {role!r} may not use MCP server {name!r}")

    async def _status(self, name: str) -> dict:
        if name not in self.actors:
            return {"name": name, "status": "disabled"}
        try:
            return await asyncio.wait_for(_as_future(self.actors[name].status.remote()), self.settings.health_timeout_s)
        except Exception as exc:
            return {"name": name, "status": "unreachable", "last_error": _message(exc)}

    async def _listing(self, name: str, refresh: bool = False) -> _Listing:
        listing = self._listings.get(name)
        if listing is None or refresh:
            wait = self.config.mcp_servers[name].call_timeout_s  # a request waits this long for a (re)start
            data = await self._ask(name, self.actors[name].list_tools.remote(wait), wait + ACTOR_SLACK_S)
            listing = _Listing(data["generation"], {t["name"]: t for t in data["tools"]})
            self._listings[name] = listing
        return listing

    def _validate(self, server: str, tool: str, arguments: Any, listing: _Listing) -> None:
        validator = listing.validator(tool)
        if validator is None:
            return
        errors = list(validator.iter_errors(arguments))
        if not errors:
            return
        best = jsonschema.exceptions.best_match(errors)
        where = "/".join(str(p) for p in best.absolute_path)
        details = [
            {"loc": ["arguments", *e.absolute_path], "msg": e.message, "type": str(e.validator)}
            for e in sorted(errors, key=lambda e: list(map(str, e.absolute_path)))
        ]
        raise InvalidInput(
            f"arguments{'.' + where.replace('/', '.') if where else ''}: {best.message} "
            f"(input schema of {server}/{tool})",
            details=details,
        )

    async def _ask(self, name: str, ref: Any, timeout: float) -> Any:
        """Await an actor call, turning a down server, a dead actor or a timeout into a 503."""
        try:
            async with asyncio.timeout(timeout):  # cheaper than wait_for: no extra task per call
                return await ref
        except TimeoutError:
            message = f"MCP server {name!r} did not answer within {timeout:g} s"
        except (RayTaskError, ServerUnavailable) as exc:
            cause = _cause(exc)
            if not isinstance(cause, ServerUnavailable):
                raise
            message = str(cause)
        except RayActorError as exc:
            message = f"MCP process actor for {name!r} is not reachable ({type(exc).__name__}); Ray is restarting it"
        self._listings.pop(name, None)  # list the tools again once it is back
        raise Unavailable(message, self.settings.retry_after_s)


def _check_encodable(arguments: dict) -> None:
    """Refuse arguments the stdio transport cannot write as UTF-8 JSON (lone surrogates, NaN)."""
    where = _unencodable(arguments, [])
    if where is None:
        return
    path, problem = where
    raise InvalidInput(
        f"arguments{''.join('.' + str(p) for p in path)}: {problem}",
        details=[{"loc": ["arguments", *path], "msg": problem, "type": "json_encoding"}],
    )


def _unencodable(value: Any, path: list[str | int]) -> tuple[list[str | int], str] | None:
    """The path to the first part of `value` that has no UTF-8 JSON form, and why; None if all do."""
    if isinstance(value, str):
        return None if _is_utf8(value) else (path, "is not valid Unicode (it holds a lone surrogate)")
    if isinstance(value, float) and not math.isfinite(value):
        return path, "is not a finite number (JSON has no NaN or Infinity)"
    if isinstance(value, dict):
        for key, item in value.items():
            if not _is_utf8(key):
                return path, "has a key that is not valid Unicode (it holds a lone surrogate)"
            if (found := _unencodable(item, [*path, key])) is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _unencodable(item, [*path, index])) is not None:
                return found
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_future(ref: Any) -> asyncio.Future[Any]:
    """An ObjectRef as an asyncio future (so wait_for can cancel our wait, not the actor's work)."""
    return asyncio.wrap_future(ref.future())


def _message(exc: BaseException) -> str:
    cause = _cause(exc)
    return str(cause) if isinstance(cause, ServerUnavailable) else type(cause).__name__
