"""What an ingress replica uses to reach the MCP process actors.

The gateway holds no server state of its own: the actors own the processes and
sessions. It knows the config (roles, timeouts, allowed tools), checks the
caller's role and the arguments (UTF-8 JSON, then the tool's input schema)
before anything crosses to the actor, and turns failures into the API's errors:
404 unknown server or tool, 403 role or a tool not allowed, 422 arguments, 503
(with Retry-After) when a server is down, restarting or too slow. A tool that
fails on its own is a normal result with `is_error`.

A `per_user` server has one actor per user, made through `spawn` at the user's
first call; the gateway remembers it and, when it has not heard from it for half
its idle timeout, reaches it again (which restarts its idle clock) before using
it, replacing it if it retired meanwhile. Only that reach is ever repeated: a
tool call never is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import ray
from jsonschema import Draft202012Validator
from ray.exceptions import RayActorError, RayTaskError

from sutazai import metrics
from sutazai.errors import Forbidden, InvalidInput, NotFound, Unavailable
from sutazai.mcp.config import USER_PLACEHOLDER, MCPConfig, ServerConfig, user_placeholders
from sutazai.mcp.errors import InstanceRetired, ServerUnavailable
from sutazai.mcp.lane import LaneClient, LaneLost
from sutazai.settings import Settings

logger = logging.getLogger("sutazai.mcp.gateway")

ACTOR_SLACK_S = 5.0  # beyond a call's own timeout, for the hop to the actor
LANE_RETRY_S = 30.0  # after an actor offered no lane (or it failed), its calls go through Ray this long


# What GET /servers shows of a server to a caller whose role may not use it.
PUBLIC_STATUS = ("name", "status", "roles", "tools")

# Makes or finds the actor of a per_user server for one user: (server, config, placeholders, user) -> handle.
Spawn = Callable[[str, ServerConfig, dict[str, str], str], Any]


@dataclass
class _Instance:
    """A user's actor of a per_user server, and when it last answered (its idle clock was reset then)."""

    actor: Any
    seen: float


@dataclass
class _Lane:
    """The same-node lane to one actor (sutazai.mcp.lane), or its absence until `retry_at`."""

    actor: Any
    client: LaneClient | None
    retry_at: float

    @property
    def connected(self) -> bool:
        return self.client is not None and not self.client.closed


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

    def __init__(
        self,
        settings: Settings,
        config: MCPConfig,
        actors: dict[str, Any],
        *,
        values: dict[str, str] | None = None,
        spawn: Spawn | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.actors = actors  # server name -> ActorHandle, enabled shared servers only
        self.values = values or {}  # the placeholders the gateway decides (DATA_DIR, CONFIG_DIR)
        self._spawn = spawn  # makes (or finds) a user's actor of a per_user server
        self._instances: dict[str, _Instance] = {}  # "<server>/<user>" -> that user's actor, as last seen
        self._locks: dict[str, asyncio.Lock] = {}
        self._listings: dict[str, _Listing] = {}  # by server name, or "<server>/<user>" for per_user ones
        self._lanes: dict[str, _Lane] = {}  # same keys: the actor's socket, when it is on this node
        for name, server in config.enabled().items():
            if server.scope == "per_user" and USER_PLACEHOLDER not in server.placeholders():
                logger.warning("MCP server %r runs per user but uses no ${USER_DIR}: its users share its data", name)

    async def configure(self, *, timeout_s: float = 30.0) -> None:
        """Hand every shared server's actor the current config; servers then start in the background.

        Returns once every actor has been reached (or `timeout_s`), not when every
        server is ready. A per_user server's actors get the config at each user's first call.
        """
        futures = {
            name: _as_future(actor.configure.remote(self.config.mcp_servers[name].model_dump(), self.values))
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

    async def servers(self, role: str | None = None, user: str | None = None) -> list[dict]:
        """Every configured server with its status (disabled ones too), for GET /servers.

        A per_user server shows `user`'s own process ("idle" until their first call). With a
        role, a server that role may not use shows only its name, status, roles and tool count:
        process ids and stderr tails are for the people who use it.
        """
        names = list(self.config.mcp_servers)
        statuses = await asyncio.gather(*(self._status(name, user) for name in names))
        out = []
        for name, status in zip(names, statuses, strict=True):
            server = self.config.mcp_servers[name]
            entry = {**status, "name": name, "roles": server.roles, "scope": server.scope}
            if role is not None and role not in server.roles:
                entry = {key: entry[key] for key in PUBLIC_STATUS if key in entry}
            out.append(entry)
        return out

    async def tools(self, name: str, role: str | None = None, user: str | None = None) -> list[dict]:
        """The server's tools (name, description, input_schema...), as listed at its last start.

        With a role, a caller who may not use the server may not see its tools either (403).
        """
        self._server(name)
        if role is not None:
            self._check_role(name, role)
        key, actor = await self._target(name, user)
        return list((await self._listing(key, actor)).tools.values())

    async def execute(
        self,
        server: str,
        tool: str,
        arguments: dict | None,
        role: str,
        *,
        user: str | None = None,
        timeout: float | None = None,
    ) -> dict:
        """Call a tool for a caller with `role` (and, for a per_user server, on `user`'s own process).
        Raises NotFound, Forbidden, InvalidInput or Unavailable; a tool's own failure is a result."""
        config = self._server(server)
        self._check_role(server, role)
        if not config.allows(tool):
            allowed = ", ".join(config.tools_allowed or []) or "none"
            raise Forbidden(f"MCP server {server!r} does not allow tool {tool!r} (allowed: {allowed})")
        arguments = arguments if arguments is not None else {}
        key, actor = await self._target(server, user)
        listing = await self._listing(key, actor)
        if tool not in listing.tools:
            listing = await self._listing(key, actor, refresh=True)  # the server may have been upgraded
        if tool not in listing.tools:
            known = ", ".join(sorted(listing.tools)) or "none"
            raise NotFound(f"MCP server {server!r} has no tool {tool!r} (tools: {known})")
        _check_encodable(arguments)
        self._validate(server, tool, arguments, listing)

        timeout = timeout or config.call_timeout_s
        started = time.perf_counter()
        try:
            lane = await self._lane(key, actor)
            call = lane.call(tool, arguments, timeout) if lane else actor.call_tool.remote(tool, arguments, timeout)
            result = await self._ask(key, call, timeout + ACTOR_SLACK_S)
        except Exception:
            metrics.MCP_CALL_ERRORS.record(1, server=server, kind="call")
            raise
        finally:
            metrics.MCP_CALL_DURATION.record(time.perf_counter() - started, server=server)
        if result.get("is_error"):
            metrics.MCP_CALL_ERRORS.record(1, server=server, kind="tool")
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        if result.pop("generation", listing.generation) != listing.generation:
            self._listings.pop(key, None)  # the server restarted: list its tools again next time
        return {"server": server, "tool": tool, **result, "latency_ms": latency_ms}

    async def health(self) -> dict[str, dict]:
        """Per enabled server: status, round-trip latency through actor and server (a ping), restarts,
        and (a shared server) whether this gateway's calls take the same-node lane.

        A per_user server is "ready" unless a user's process this gateway knows of is not;
        `instances` counts those processes.
        """
        timeout = self.settings.health_timeout_s

        async def one(actor: Any) -> dict:
            started = time.perf_counter()
            try:
                status = await asyncio.wait_for(_as_future(actor.health.remote(timeout)), timeout + 1)
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

        async def per_user(name: str) -> dict:
            keys = [key for key in self._instances if _server_of(key) == name]
            reports = await asyncio.gather(*(one(self._instances[key].actor) for key in keys))
            live = []
            for key, report in zip(keys, reports, strict=True):
                if report["status"] == "unreachable":
                    self._forget(key)  # it retired for being idle (or is gone): reached afresh at next use
                else:
                    live.append(report)
            trouble = next((r for r in live if r["status"] != "ready"), None)
            return {**(trouble or {"status": "ready", "latency_ms": None}), "instances": len(live)}

        async def shared(name: str) -> dict:
            return {**await one(self.actors[name]), "lane": self._lane_open(name)}

        names = [name for name, server in self.config.enabled().items()]
        reports = await asyncio.gather(*(shared(n) if n in self.actors else per_user(n) for n in names))
        return dict(zip(names, reports, strict=True))

    # ---- admin ----------------------------------------------------------

    async def restart(self, name: str, user: str | None = None) -> dict:
        """Stop the server process and start it again; returns its status once ready (bounded wait).
        For a per_user server, `user`'s own process."""
        config = self._server(name)
        key, actor = await self._target(name, user)
        self._listings.pop(key, None)
        wait = config.start_timeout_s
        return {**await self._ask(key, actor.restart.remote(wait), wait + ACTOR_SLACK_S), "name": name}

    async def wait_ready(self, timeout: float = 60.0) -> dict[str, str]:
        """Wait until every enabled shared server is ready (or failed); returns name -> status."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = {s["name"]: s["status"] for s in await self.servers() if s["name"] in self.actors}
            if all(s in ("ready", "failed") for s in statuses.values()) or time.monotonic() > deadline:
                return statuses
            await asyncio.sleep(0.1)

    async def shutdown(self) -> None:
        """Stop every server and end its actor (detached actors outlive the app otherwise);
        per_user ones too, as far as this gateway knows them."""

        async def one(name: str, actor: Any) -> None:
            try:
                await asyncio.wait_for(_as_future(actor.stop.remote()), 15)
            except Exception as exc:
                logger.warning("stopping MCP server %r: %s", name, _message(exc))
            with contextlib.suppress(Exception):  # a per_user actor may have ended itself
                ray.kill(actor, no_restart=True)

        actors = {**self.actors, **{key: i.actor for key, i in self._instances.items()}}
        self._instances.clear()
        for key in list(self._lanes):
            self._drop_lane(key)
        await asyncio.gather(*(one(name, actor) for name, actor in actors.items()))

    # ---- helpers --------------------------------------------------------

    def _server(self, name: str) -> ServerConfig:
        """The server's config; NotFound when it is not configured or disabled."""
        if name not in self.config.mcp_servers:
            known = ", ".join(sorted(self.config.mcp_servers)) or "none"
            raise NotFound(f"MCP server {name!r} not found (servers: {known})")
        server = self.config.mcp_servers[name]
        if not server.enabled:
            raise NotFound(f"MCP server {name!r} is disabled in the configuration")
        return server

    def _check_role(self, name: str, role: str) -> None:
        if role not in self.config.mcp_servers[name].roles:
            raise Forbidden(f"role {role!r} may not use MCP server {name!r}")

    async def _target(self, name: str, user: str | None) -> tuple[str, Any]:
        """The actor that serves `name` for `user`, and the key its tools are cached under."""
        server = self.config.mcp_servers[name]
        if server.scope == "shared":
            return name, self.actors[name]
        if user is None or self._spawn is None:
            raise Forbidden(f"MCP server {name!r} runs one process per user: it needs a signed-in user")
        key = f"{name}/{user}"
        instance = self._instances.get(key)
        if instance is None or time.monotonic() - instance.seen > server.idle_timeout_s / 2:
            async with self._locks.setdefault(key, asyncio.Lock()):
                instance = await self._touch(name, user, key)
        return key, instance.actor

    async def _touch(self, name: str, user: str, key: str) -> _Instance:
        """Reach the user's actor (creating it if there is none) and restart its idle clock.

        An actor that retired for being idle, or ended, ran nothing of ours: it is replaced,
        waiting for Ray to release its name, within the server's start timeout.
        """
        assert self._spawn is not None
        server = self.config.mcp_servers[name]
        values = user_placeholders(self.values, user)
        deadline = time.monotonic() + server.start_timeout_s
        while True:
            instance = self._instances.get(key)
            actor = instance.actor if instance else await asyncio.to_thread(self._spawn, name, server, values, user)
            try:
                remaining = max(deadline - time.monotonic(), 0.1)
                await asyncio.wait_for(_as_future(actor.configure.remote(server.model_dump(), values)), remaining)
            except TimeoutError:
                raise Unavailable(
                    f"MCP server {name!r} did not answer within {server.start_timeout_s:g} s",
                    self.settings.retry_after_s,
                ) from None
            except (RayActorError, InstanceRetired):  # Ray raises the actor's exception as its own class too
                self._forget(key)
                if time.monotonic() > deadline:
                    raise Unavailable(
                        f"MCP server {name!r}: no process for this user yet", self.settings.retry_after_s
                    ) from None
                await asyncio.sleep(0.1)
                continue
            instance = _Instance(actor, time.monotonic())
            self._instances[key] = instance
            return instance

    def _forget(self, key: str) -> None:
        self._instances.pop(key, None)
        self._listings.pop(key, None)
        self._drop_lane(key)

    async def _lane(self, key: str, actor: Any) -> LaneClient | None:
        """The connection to `actor`'s socket when it runs on this node; None: call through Ray.

        Asked of the actor once (and again after the connection ends); an actor that offers
        none, runs elsewhere or cannot be reached this way is called through Ray for LANE_RETRY_S.
        """
        lane = self._lanes.get(key)
        if lane is not None and lane.actor is actor:
            if lane.connected:
                return lane.client
            if lane.client is None and time.monotonic() < lane.retry_at:
                return None
        async with self._locks.setdefault(f"lane:{key}", asyncio.Lock()):
            lane = self._lanes.get(key)
            if lane is not None and lane.actor is actor and lane.connected:
                return lane.client
            self._drop_lane(key)
            client = None
            try:
                endpoint = await asyncio.wait_for(_as_future(actor.lane.remote()), self.settings.health_timeout_s)
                if endpoint is not None and endpoint["node_id"] == _node_id():
                    client = await LaneClient.connect(endpoint)
            except Exception as exc:  # the lane only saves time: whatever failed, Ray still carries the call
                logger.info("MCP server %r: calls go through Ray (no lane: %s)", _server_of(key), _message(exc))
            self._lanes[key] = _Lane(actor, client, time.monotonic() + LANE_RETRY_S)
            return client

    def _lane_open(self, key: str) -> bool:
        lane = self._lanes.get(key)
        return lane is not None and lane.connected

    def _drop_lane(self, key: str) -> None:
        lane = self._lanes.pop(key, None)
        if lane is not None and lane.client is not None:
            lane.client.abandon()

    async def _status(self, name: str, user: str | None) -> dict:
        server = self.config.mcp_servers[name]
        if not server.enabled:
            return {"name": name, "status": "disabled"}
        key = name if server.scope == "shared" else f"{name}/{user}"
        instance = self._instances.get(key)
        actor = self.actors[name] if server.scope == "shared" else (instance.actor if instance else None)
        if actor is None:
            return {"name": name, "status": "idle"}  # a per_user server starts at the user's first call
        try:
            return await asyncio.wait_for(_as_future(actor.status.remote()), self.settings.health_timeout_s)
        except RayActorError:
            if server.scope == "per_user":  # it retired for being idle
                self._forget(key)
                return {"name": name, "status": "idle"}
            return {"name": name, "status": "unreachable", "last_error": "the actor is not reachable"}
        except Exception as exc:
            return {"name": name, "status": "unreachable", "last_error": _message(exc)}

    async def _listing(self, key: str, actor: Any, refresh: bool = False) -> _Listing:
        listing = self._listings.get(key)
        if listing is None or refresh:
            wait = self.config.mcp_servers[_server_of(key)].call_timeout_s  # a request waits this long for a start
            data = await self._ask(key, actor.list_tools.remote(wait), wait + ACTOR_SLACK_S)
            listing = _Listing(data["generation"], {t["name"]: t for t in data["tools"]})
            self._listings[key] = listing
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

    async def _ask(self, key: str, ref: Any, timeout: float) -> Any:
        """Await an actor call (through Ray or the lane), turning a down server, a dead actor,
        a lost lane or a timeout into a 503."""
        name = _server_of(key)
        try:
            async with asyncio.timeout(timeout):  # cheaper than wait_for: no extra task per call
                result = await ref
        except TimeoutError:
            message = f"MCP server {name!r} did not answer within {timeout:g} s"
        except (RayTaskError, ServerUnavailable) as exc:
            cause = _cause(exc)
            if not isinstance(cause, ServerUnavailable):
                raise
            message = str(cause)
            if isinstance(cause, InstanceRetired):
                self._forget(key)
        except RayActorError as exc:
            message = f"MCP process actor for {name!r} is not reachable ({type(exc).__name__}); Ray is restarting it"
            self._instances.pop(key, None)  # a per_user one is reached afresh next time
            self._drop_lane(key)
        except LaneLost as exc:  # the actor's process ended under the call (or closed the socket)
            message = f"MCP process actor for {name!r} was lost during the call ({exc}); the tool may have run"
            self._instances.pop(key, None)
            self._drop_lane(key)
        else:
            if (instance := self._instances.get(key)) is not None:
                instance.seen = time.monotonic()
            return result
        self._listings.pop(key, None)  # list the tools again once it is back
        raise Unavailable(message, self.settings.retry_after_s)


def _server_of(key: str) -> str:
    """The server name of a listing/instance key ("time", or "filesystem/<user>")."""
    return key.split("/", 1)[0]


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


def _node_id() -> str | None:
    """The Ray node this gateway runs on (None outside Ray: no lanes)."""
    try:
        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:
        return None


def _as_future(ref: Any) -> asyncio.Future[Any]:
    """An ObjectRef as an asyncio future (so wait_for can cancel our wait, not the actor's work)."""
    return asyncio.wrap_future(ref.future())


def _message(exc: BaseException) -> str:
    cause = _cause(exc)
    return str(cause) if isinstance(cause, ServerUnavailable) else type(cause).__name__
