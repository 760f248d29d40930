"""One Ray actor per configured MCP server: it owns the stdio subprocess and one client session.

Why an actor: the server process must outlive HTTP replicas coming and going,
be found by name from any replica or agent on the cluster, and be restarted
when it dies, without a home-made registry. The actor is named and detached
(`mcp-<server>` in namespace "sutazai"); Ray restarts the actor itself if its
process dies, and the actor restarts the server process, with exponential
backoff, if that dies.

One `ClientSession` carries many concurrent calls (JSON-RPC ids correlate
them); a semaphore caps how many are in flight at the server. Calls are never
retried by Ray or by the actor: a tool call may have side effects.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import ray
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from mcp.types import CONNECTION_CLOSED, PaginatedRequestParams
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sutazai.mcp.config import ServerConfig, expand_server, load_config, local_placeholders, shared_placeholders
from sutazai.mcp.errors import CallTimedOut, ServerUnavailable
from sutazai.mcp.gateway import MCPGateway
from sutazai.settings import Settings

NAMESPACE = "sutazai"
ACTOR_MAX_RESTARTS = 10  # Ray restarts of the actor process itself
WATCH_INTERVAL_S = 0.25  # how often the supervisor checks that the server process is alive
SPAWN_MARK = "SUTAZAI_MCP_SPAWN"  # env var that tells our child apart from other children

logger = logging.getLogger("sutazai.mcp.process")


def actor_name(server: str) -> str:
    return f"mcp-{server}"


def _setup_logging() -> None:
    """Ray workers leave the root logger at WARNING; server stderr is logged at INFO."""
    root = logging.getLogger("sutazai.mcp")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False


def _pump_stderr(fd: int, log: logging.Logger, tail: collections.deque) -> None:
    """Copy the server's stderr into the actor's log, line by line, until the pipe closes."""
    with open(fd, encoding="utf-8", errors="replace") as pipe:
        for line in pipe:
            if line.strip():
                log.info("%s", line.rstrip())
                tail.append(line.strip()[:500])


def _find_child(mark: str, before: set[int]) -> psutil.Process | None:
    """The process stdio_client just spawned: our direct child that carries the spawn mark."""
    new = [p for p in psutil.Process().children() if p.pid not in before]
    for proc in new:
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(SPAWN_MARK) == mark:
                return proc
    return new[0] if len(new) == 1 else None  # environ() unreadable: fall back to the only new child


def _alive(proc: psutil.Process | None) -> bool:
    if proc is None:
        return True  # unknown pid: rely on the session noticing the closed pipe
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _tool_dict(tool: Any) -> dict:
    data = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
    out = {"name": tool.name, "description": tool.description or "", "input_schema": data.get("inputSchema", {})}
    for key, alias in (("title", "title"), ("output_schema", "outputSchema"), ("annotations", "annotations")):
        if alias in data:
            out[key] = data[alias]
    return out


def _result_dict(result: Any) -> dict:
    content = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in result.content]
    return {
        "is_error": bool(result.is_error),
        "content": content,
        "structured_content": result.structured_content,
        "text": "\n".join(c["text"] for c in content if c.get("type") == "text"),
    }


def _error_result(message: str) -> dict:
    return {
        "is_error": True,
        "content": [{"type": "text", "text": message}],
        "structured_content": None,
        "text": message,
    }


def _unsendable(tool: str, arguments: dict) -> str | None:
    """Why the call cannot be written to the server's stdin as UTF-8 JSON, or None.

    Checked before the SDK's stdin writer sees it: a message that writer fails to
    encode ends the transport, and with it every call in flight.
    """
    try:
        json.dumps({"name": tool, "arguments": arguments}, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        reason = "not valid Unicode" if isinstance(exc, UnicodeEncodeError) else type(exc).__name__
        return f"the arguments of {tool!r} cannot be sent as UTF-8 JSON ({reason}); nothing was sent to the server"
    return None


@ray.remote
class MCPProcess:
    """Owns one stdio MCP server process and its session; see the module docstring."""

    def __init__(self, name: str, server: dict, values: dict[str, str]) -> None:
        _setup_logging()
        self.name = name
        self.log = logging.getLogger(f"sutazai.mcp.server.{name}")
        self._config = ServerConfig.model_validate(server)
        self._values = dict(values)
        self._semaphore = asyncio.Semaphore(self._config.max_concurrent_calls)
        self._status = "starting"
        self._session: ClientSession | None = None
        self._proc: psutil.Process | None = None
        self._tools: list[dict] = []
        self._server_info: dict | None = None
        self._generation = 0  # +1 every time a server becomes ready
        self._restarts = 0
        self._last_error: str | None = None
        self._ready_since: float | None = None
        self._in_flight = 0
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=3)  # for last_error
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()  # the serving loop should look: died, restart asked, stop
        self._restart_asked = False
        self._stopping = False
        self._supervisor: asyncio.Task | None = None

    # ---- lifecycle -------------------------------------------------------

    def _ensure_supervisor(self) -> None:
        """Start the supervisor on the actor's event loop (there is none yet in __init__)."""
        if self._supervisor is None or self._supervisor.done():
            self._stopping = False
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        """Run the server; when it dies, start it again after a backoff, or give up after max_restarts."""
        failures = 0
        while not self._stopping:
            self._restart_asked = False
            self._wake.clear()
            started = time.monotonic()
            try:
                await self._serve_once()
            except Exception as exc:  # a failed start: bad command, crash during initialize, timeout
                self._last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if not _alive(self._proc):
                    self._last_error += f" (server process {self.pid} exited)"
                if self._stderr_tail:
                    self._last_error += f"; its stderr ended with: {self._stderr_tail[-1]}"
                self.log.error("MCP server %r failed: %s", self.name, self._last_error)
            finally:
                self._mark_down()
            if self._stopping:
                break
            policy = self._config.restart
            if self._restart_asked:  # admin restart or reconfigure: at once, count reset
                self._restart_asked = False
                failures = 0
                delay = 0.0
            else:
                if time.monotonic() - started >= policy.stable_after_s:
                    failures = 0
                failures += 1
                if policy.max_restarts >= 0 and failures > policy.max_restarts:
                    self._status = "failed"
                    self.log.error("MCP server %r gave up after %d failed starts", self.name, failures - 1)
                    await self._wait_for_restart_request()
                    failures = 0
                    delay = 0.0
                else:
                    delay = min(policy.backoff_initial_s * 2 ** (failures - 1), policy.backoff_max_s)
            if self._stopping:
                break
            self._status = "restarting"
            if delay:
                self.log.warning("restarting MCP server %r in %.2f s (attempt %d)", self.name, delay, failures)
                await self._sleep_unless_woken(delay)
            self._restarts += 1
        self._status = "stopped"

    async def _serve_once(self) -> None:
        """Spawn, initialize, list tools, then serve until the process dies or a restart is asked."""
        config = expand_server(self._config, {**local_placeholders(), **self._values})
        for folder in config.ensure_dirs:
            Path(folder).mkdir(parents=True, exist_ok=True)
        mark = uuid.uuid4().hex
        params = StdioServerParameters(
            command=config.command, args=config.args, env={**config.env, SPAWN_MARK: mark}, cwd=config.cwd
        )
        read_fd, write_fd = os.pipe()
        self._stderr_tail.clear()
        pump = threading.Thread(
            target=_pump_stderr,
            args=(read_fd, self.log, self._stderr_tail),
            daemon=True,
            name=f"mcp-{self.name}-stderr",
        )
        pump.start()
        async with contextlib.AsyncExitStack() as stack:
            with open(write_fd, "w") as errlog:  # the child holds its own copy of the write end
                before = {p.pid for p in psutil.Process().children()}
                read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog))
            self._proc = _find_child(mark, before)
            session = await stack.enter_async_context(ClientSession(read, write))
            async with asyncio.timeout(config.start_timeout_s):
                init = await session.initialize()
                tools = await self._list_all_tools(session)
            self._server_info = (
                init.server_info.model_dump(mode="json", exclude_none=True) if init.server_info else None
            )
            self._tools = tools
            self._session = session
            self._generation += 1
            self._ready_since = time.monotonic()
            self._status = "ready"
            self._ready.set()
            self.log.info(
                "MCP server %r ready: pid %s, %d tools, start #%d",
                self.name,
                self.pid,
                len(tools),
                self._generation,
            )
            try:
                await self._watch()
            finally:
                self._mark_down()  # before the transport shuts down: new calls wait for the next start

    async def _watch(self) -> None:
        """Return when the server process is gone, a call saw the connection close, or we are asked to."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WATCH_INTERVAL_S):
                    await self._wake.wait()
            if self._stopping or self._restart_asked:
                return
            if not _alive(self._proc) or self._wake.is_set():
                self._last_error = f"server process {self.pid} exited"
                if self._stderr_tail:
                    self._last_error += f"; its stderr ended with: {self._stderr_tail[-1]}"
                self.log.error("MCP server %r: %s", self.name, self._last_error)
                return

    def _mark_down(self) -> None:
        self._ready.clear()
        self._session = None
        self._ready_since = None
        if self._status == "ready":
            self._status = "restarting"

    async def _list_all_tools(self, session: ClientSession) -> list[dict]:
        tools: list[dict[str, Any]] = []
        cursor = None
        for _ in range(100):  # bounded: a server that paginates forever cannot hang the start
            page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
            tools.extend(_tool_dict(t) for t in page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def _sleep_unless_woken(self, seconds: float) -> None:
        if self._restart_asked or self._stopping:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _wait_for_restart_request(self) -> None:
        while not (self._restart_asked or self._stopping):
            self._wake.clear()
            await self._wake.wait()

    async def _session_when_ready(self) -> ClientSession:
        """The live session, waiting for a start or restart in progress (the caller bounds the wait)."""
        self._ensure_supervisor()
        while self._session is None:
            if self._status == "failed":
                raise ServerUnavailable(
                    f"MCP server {self.name!r} failed and is not being restarted "
                    f"(last error: {self._last_error}); an admin can restart it"
                )
            with contextlib.suppress(TimeoutError):  # wake up now and then to notice "failed"
                async with asyncio.timeout(WATCH_INTERVAL_S):
                    await self._ready.wait()
        return self._session

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ---- the actor's API ------------------------------------------------

    async def configure(self, server: dict, values: dict[str, str]) -> dict:
        """Adopt a changed config entry (restarting the server); a no-op when nothing changed."""
        config = ServerConfig.model_validate(server)
        if config.fingerprint() != self._config.fingerprint() or values != self._values:
            self.log.info("MCP server %r reconfigured; restarting it", self.name)
            self._config, self._values = config, dict(values)
            self._semaphore = asyncio.Semaphore(config.max_concurrent_calls)
            if self._supervisor is not None and not self._supervisor.done():
                self._restart_asked = True
                self._wake.set()
        self._ensure_supervisor()
        return self.status()

    async def list_tools(self, timeout: float | None = None) -> dict:
        """The tools as listed at the last start, with the start they belong to."""
        timeout = timeout or self._config.start_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await self._session_when_ready()
        except TimeoutError:
            raise ServerUnavailable(self._not_ready_message(timeout)) from None
        return {"generation": self._generation, "tools": self._tools}

    async def call_tool(self, tool: str, arguments: dict | None = None, timeout: float | None = None) -> dict:
        """Call one tool. A tool's own failure is a result with is_error; a dead or slow server raises."""
        timeout = timeout or self._config.call_timeout_s
        waiting_for = "start"
        generation = self._generation
        session: ClientSession | None = None
        problem = _unsendable(tool, arguments or {})
        if problem is not None:
            return {**_error_result(problem), "generation": generation}
        try:
            async with asyncio.timeout(timeout):
                await self._session_when_ready()
                waiting_for = "slot"
                async with self._semaphore:
                    session = await self._session_when_ready()
                    waiting_for = "call"
                    generation = self._generation
                    self._in_flight += 1
                    try:
                        result = await session.call_tool(tool, arguments or {})
                    finally:
                        self._in_flight -= 1
        except TimeoutError:
            if waiting_for == "start":
                raise ServerUnavailable(self._not_ready_message(timeout)) from None
            raise CallTimedOut(f"MCP server {self.name!r}: tool {tool!r} did not finish within {timeout:g} s") from None
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                if self._session is session:
                    self._mark_down()  # calls arriving from now on wait for the restart
                self._wake.set()  # tell the supervisor now rather than at its next look
                raise ServerUnavailable(
                    f"MCP server {self.name!r} stopped while {tool!r} was running; it is being restarted"
                ) from None
            # The server answered with a JSON-RPC error (unknown tool, bad params...): the tool failed.
            return {**_error_result(f"{exc.message} (MCP error {exc.code})"), "generation": generation}
        except ServerUnavailable:
            raise
        except Exception as exc:  # this call's own failure (e.g. a result that breaks the tool's output schema)
            self.log.warning("MCP server %r: call of %r failed: %s: %s", self.name, tool, type(exc).__name__, exc)
            return {**_error_result(f"{type(exc).__name__}: {exc}"), "generation": generation}
        return {**_result_dict(result), "generation": generation}

    async def restart(self, wait_s: float | None = None) -> dict:
        """Admin: stop the server and start it again now; waits for it to be ready (bounded)."""
        generation = self._generation
        self._restart_asked = True
        self._wake.set()
        self._ensure_supervisor()
        deadline = time.monotonic() + (wait_s if wait_s is not None else self._config.start_timeout_s)
        while time.monotonic() < deadline:
            if self._generation > generation and self._status == "ready":
                break
            await asyncio.sleep(0.05)
        return self.status()

    async def stop(self) -> dict:
        """Stop the server process (before the actor is killed): stdin closes, then SIGTERM/SIGKILL."""
        self._stopping = True
        self._wake.set()
        if self._supervisor is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._supervisor, timeout=10)
        return self.status()

    async def health(self, timeout: float = 3.0) -> dict:
        """Status plus a ping through the session: proves the server answers, not just that it runs."""
        self._ensure_supervisor()
        status = self.status()
        session = self._session
        if session is not None:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    await session.send_ping()
                status["ping_ms"] = round((time.perf_counter() - started) * 1000, 2)
            except (TimeoutError, MCPError) as exc:
                status["status"] = "unresponsive"
                status["last_error"] = f"ping failed: {type(exc).__name__} {exc}".strip()
        return status

    def status(self) -> dict:
        return {
            "name": self.name,
            "status": self._status,
            "pid": self.pid if self._status == "ready" else None,
            "actor_pid": os.getpid(),
            "restarts": self._restarts,
            "tools": len(self._tools),
            "last_error": self._last_error,
            "in_flight": self._in_flight,
            "generation": self._generation,
            "uptime_s": round(time.monotonic() - self._ready_since, 1) if self._ready_since else None,
            "server_info": self._server_info,
            "fingerprint": self._config.fingerprint(),
        }

    def _not_ready_message(self, timeout: float) -> str:
        why = f"; last error: {self._last_error}" if self._last_error else ""
        return f"MCP server {self.name!r} is {self._status}, not ready within {timeout:g} s{why}"


def get_or_create(name: str, server: ServerConfig, values: dict[str, str], namespace: str = NAMESPACE) -> Any:
    """The named detached actor for a server, created on first use (`get_if_exists` makes it race-free)."""
    options: dict[str, Any] = dict(
        name=actor_name(name),
        namespace=namespace,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=ACTOR_MAX_RESTARTS,
        max_task_retries=0,  # tool calls may have side effects: never replay them
        max_concurrency=1000,
        num_cpus=server.num_cpus,
    )
    if server.resources:
        options["resources"] = server.resources
    if server.node_id:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(server.node_id, soft=False)
    return MCPProcess.options(**options).remote(name, server.model_dump(), values)  # type: ignore[attr-defined]


async def connect_gateway(settings: Settings, *, namespace: str = NAMESPACE, timeout_s: float = 30.0) -> MCPGateway:
    """Get or create one detached actor per enabled server, hand each the current config,
    and return the gateway a replica uses to reach them. `namespace` keeps separate
    deployments or test runs apart."""
    config = load_config(settings.mcp_config)
    values = shared_placeholders(settings.data_dir, config.config_dir)
    actors = {
        name: await asyncio.to_thread(get_or_create, name, server, values, namespace)
        for name, server in config.enabled().items()
    }
    gateway = MCPGateway(settings, config, actors)
    await gateway.configure(values, timeout_s=timeout_s)
    return gateway
