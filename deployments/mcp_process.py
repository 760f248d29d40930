"""One Ray actor per configured MCP server: it owns the stdio subprocess and one client session.

Why an actor: the server process must outlive HTTP replicas coming and going,
be found by name from any replica or agent on the cluster, and be restarted
when it dies, without a home-made registry. The actor is named and detached
(`mcp-<server>` in namespace "sutazai"); Ray restarts the actor itself if its
process dies, and the actor restarts the server process, with exponential
backoff, if that dies. A command that does not exist is failed at once: no
restart can find it.

A `per_user` server has one actor per user (`mcp-<server>-<user id>`), created
by the gateway on the user's first call; once unused for `idle_timeout_s` it
stops its server, refuses new calls (`InstanceRetired`, which the gateway
answers by creating a fresh one) and ends itself.

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
import shutil
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

from sutazai.mcp.config import (
    Prepare,
    ServerConfig,
    expand_server,
    load_config,
    local_placeholders,
    shared_placeholders,
)
from sutazai.mcp.errors import CallTimedOut, InstanceRetired, ServerUnavailable
from sutazai.mcp.gateway import MCPGateway
from sutazai.mcp.lane import LaneServer
from sutazai.settings import Settings

NAMESPACE = "sutazai"
ACTOR_MAX_RESTARTS = 10  # Ray restarts of the actor process itself
WATCH_INTERVAL_S = 0.25  # how often the supervisor checks that the server process is alive
STDERR_DRAIN_S = 1.0  # how long a failure waits for the stderr copy to reach the exited server's last line
SPAWN_MARK = "SUTAZAI_MCP_SPAWN"  # env var that tells our child apart from other children

logger = logging.getLogger("sutazai.mcp.process")


def actor_name(server: str, user: str | None = None) -> str:
    return f"mcp-{server}" if user is None else f"mcp-{server}-{user}"


class CommandNotFound(Exception):
    """The server's command is not on this node: restarting cannot help, so the server is failed at once."""


def _check_command(command: str, env: dict[str, str]) -> None:
    """Raise CommandNotFound unless `command` is an executable file or found on PATH (as the spawn would)."""
    if os.sep in command and not os.path.isabs(command):
        return  # relative to the server's cwd: let the spawn decide
    if shutil.which(command, path=env.get("PATH", os.environ.get("PATH"))) is None:
        raise CommandNotFound(f"command {command!r} not found")


async def run_prepare(prepare: Prepare) -> None:
    """Run the entry's prepare command unless what it creates exists (expanded entry; see config.Prepare).

    What a failed or timed-out run left behind is removed, so the next start runs it again.
    """
    if os.path.exists(prepare.creates):
        return
    _check_command(prepare.command[0], {})
    proc = await asyncio.create_subprocess_exec(
        *prepare.command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(prepare.timeout_s):
            _, stderr = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        shutil.rmtree(prepare.creates, ignore_errors=True)
        raise RuntimeError(
            f"prepare command {prepare.command[0]!r} did not finish within {prepare.timeout_s:g} s"
        ) from None
    if proc.returncode != 0:
        shutil.rmtree(prepare.creates, ignore_errors=True)
        tail = stderr.decode(errors="replace").strip()[-300:]
        raise RuntimeError(f"prepare command {prepare.command[0]!r} exited with {proc.returncode}: {tail}")


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
        "text": _joined_text(content),
        "truncated": False,
    }


def _error_result(message: str) -> dict:
    return {
        "is_error": True,
        "content": [{"type": "text", "text": message}],
        "structured_content": None,
        "text": message,
        "truncated": False,
    }


def _joined_text(content: list[dict]) -> str:
    return "\n".join(c["text"] for c in content if c.get("type") == "text")


def _size(value: Any) -> int:
    """Bytes of a content item: the UTF-8 text of a text item, the JSON of anything else."""
    if isinstance(value, dict) and value.get("type") == "text":
        return len(value["text"].encode("utf-8"))
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))


def _capped(result: dict, limit: int) -> dict:
    """The result with at most `limit` bytes of content: text cut short, other items left out once
    over, structured content left out when it alone is over; a last text item says so."""
    total = sum(_size(c) for c in result["content"])
    structured = result["structured_content"]
    structured_size = _size(structured) if structured is not None else 0
    if total <= limit and structured_size <= limit:
        return result
    budget, content = limit, []
    for item in result["content"]:
        if item.get("type") == "text":
            text = item["text"].encode("utf-8")[:budget].decode("utf-8", errors="ignore")
            if text:
                content.append({**item, "text": text})
            budget -= len(text.encode("utf-8"))
        elif _size(item) <= budget:
            content.append(item)
            budget -= _size(item)
    note = f"[result truncated: the tool returned {max(total, structured_size)} bytes; this server's limit is {limit}]"
    content.append({"type": "text", "text": note})
    return {
        **result,
        "content": content,
        "structured_content": structured if structured_size <= limit else None,
        "text": _joined_text(content),
        "truncated": True,
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

    def __init__(self, name: str, server: dict, values: dict[str, str], user: str | None = None) -> None:
        _setup_logging()
        self.name = name if user is None else f"{name}[{user[:8]}]"  # for messages and logs
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
        self._stderr_pump: threading.Thread | None = None
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()  # the serving loop should look: died, restart asked, stop
        self._restart_asked = False
        self._stopping = False
        self._supervisor: asyncio.Task | None = None
        self._active = 0  # calls and listings under way, waiting ones included
        self._last_used = time.monotonic()
        self._retired = False  # a per_user server that went idle: it takes no more calls
        self._reaper: asyncio.Task | None = None
        self._lane = LaneServer(self.call_tool)  # same-node tool calls without Ray (sutazai.mcp.lane)
        self._lane_start: asyncio.Task | None = None

    # ---- lifecycle -------------------------------------------------------

    def _ensure_supervisor(self) -> None:
        """Start the supervisor on the actor's event loop (there is none yet in __init__)."""
        if self._supervisor is None or self._supervisor.done():
            self._stopping = False
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        if self._config.scope == "per_user" and self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._retire_when_idle())

    async def _retire_when_idle(self) -> None:
        """A per_user server: once unused for idle_timeout_s, stop it and end this actor."""
        while True:
            await asyncio.sleep(min(self._config.idle_timeout_s / 4, 5.0))
            if not self._active and time.monotonic() - self._last_used >= self._config.idle_timeout_s:
                break
        self._retired = True  # from here every call raises InstanceRetired: the gateway makes a new actor
        self.log.info("MCP server %r unused for %g s: stopping it", self.name, self._config.idle_timeout_s)
        await self.stop()
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    def _use(self) -> None:
        """Every entry point: refuse when retired, else count as use (restarts the idle clock)."""
        if self._retired:
            raise InstanceRetired(f"MCP server {self.name!r} was stopped for being idle")
        self._last_used = time.monotonic()

    async def _supervise(self) -> None:
        """Run the server; when it dies, start it again after a backoff, or give up after max_restarts."""
        failures = 0
        while not self._stopping:
            self._restart_asked = False
            self._wake.clear()
            started = time.monotonic()
            permanent = False
            try:
                await self._serve_once()
            except Exception as exc:  # a failed start: bad command, crash during initialize, timeout
                permanent = isinstance(exc, CommandNotFound)
                if permanent:
                    self._last_error = str(exc)
                else:
                    self._last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    if not _alive(self._proc):
                        self._last_error += f" (server process {self.pid} exited)"
                    self._last_error += await self._stderr_ending()
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
                if permanent or (policy.max_restarts >= 0 and failures > policy.max_restarts):
                    self._status = "failed"
                    self.log.error("MCP server %r gave up after %d failed starts", self.name, failures)
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
        values = {**local_placeholders(), **self._values}
        config = expand_server(self._config, values)
        if "USER_DIR" in values:
            Path(values["USER_DIR"]).mkdir(parents=True, exist_ok=True)
        for folder in config.ensure_dirs:
            Path(folder).mkdir(parents=True, exist_ok=True)
        if config.prepare is not None:
            await run_prepare(config.prepare)
        _check_command(config.command, config.env)
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
        self._stderr_pump = pump
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
            self._tools = [t for t in tools if config.allows(t["name"])]
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

    async def _stderr_ending(self) -> str:
        """What last_error adds about stderr: its last line, or nothing. A thread copies the pipe and
        under load can trail the server's exit, so once the server is gone this waits for the pipe's end
        (else the error could miss what the server said before it died)."""
        pump = self._stderr_pump
        if pump is not None and not _alive(self._proc):
            await asyncio.to_thread(pump.join, STDERR_DRAIN_S)
        return f"; its stderr ended with: {self._stderr_tail[-1]}" if self._stderr_tail else ""

    async def _watch(self) -> None:
        """Return when the server process is gone, a call saw the connection close, or we are asked to."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WATCH_INTERVAL_S):
                    await self._wake.wait()
            if self._stopping or self._restart_asked:
                return
            if not _alive(self._proc) or self._wake.is_set():
                self._last_error = f"server process {self.pid} exited" + await self._stderr_ending()
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
        self._use()
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

    async def lane(self) -> dict | None:
        """Where a gateway on this node can send tool calls without Ray (None: it cannot)."""
        self._use()
        if self._lane_start is None:
            self._lane_start = asyncio.get_running_loop().create_task(self._lane.start())
        try:
            await asyncio.shield(self._lane_start)
        except OSError as exc:  # e.g. no private socket folder: every call goes through Ray
            self.log.warning("MCP server %r: no same-node lane (%s: %s)", self.name, type(exc).__name__, exc)
            return None
        endpoint = self._lane.endpoint()
        return None if endpoint is None else {**endpoint, "node_id": ray.get_runtime_context().get_node_id()}

    async def list_tools(self, timeout: float | None = None) -> dict:
        """The tools as listed at the last start, with the start they belong to."""
        self._use()
        timeout = timeout or self._config.start_timeout_s
        self._active += 1
        try:
            async with asyncio.timeout(timeout):
                await self._session_when_ready()
        except TimeoutError:
            raise ServerUnavailable(self._not_ready_message(timeout)) from None
        finally:
            self._active -= 1
            self._last_used = time.monotonic()
        return {"generation": self._generation, "tools": self._tools}

    async def call_tool(self, tool: str, arguments: dict | None = None, timeout: float | None = None) -> dict:
        """Call one tool. A tool's own failure is a result with is_error; a dead or slow server raises."""
        self._use()
        self._active += 1
        try:
            result = await self._call_tool(tool, arguments or {}, timeout or self._config.call_timeout_s)
        finally:
            self._active -= 1
            self._last_used = time.monotonic()
        return _capped(result, self._config.max_result_bytes)

    async def _call_tool(self, tool: str, arguments: dict, timeout: float) -> dict:
        waiting_for = "start"
        generation = self._generation
        session: ClientSession | None = None
        if not self._config.allows(tool):
            return {
                **_error_result(f"tool {tool!r} is not allowed on MCP server {self.name!r}"),
                "generation": generation,
            }
        problem = _unsendable(tool, arguments)
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
                        result = await session.call_tool(tool, arguments)
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
        self._use()
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
        await self._lane.close()  # the actor ends next: no socket file left behind
        return self.status()

    async def health(self, timeout: float = 3.0) -> dict:
        """Status plus a ping through the session: proves the server answers, not just that it runs."""
        if self._retired:
            raise InstanceRetired(f"MCP server {self.name!r} was stopped for being idle")
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
            "scope": self._config.scope,
        }

    def _not_ready_message(self, timeout: float) -> str:
        why = f"; last error: {self._last_error}" if self._last_error else ""
        return f"MCP server {self.name!r} is {self._status}, not ready within {timeout:g} s{why}"


def get_or_create(
    name: str, server: ServerConfig, values: dict[str, str], namespace: str = NAMESPACE, user: str | None = None
) -> Any:
    """The named detached actor for a server (a user's own for a per_user one), created on first use
    (`get_if_exists` makes it race-free)."""
    options: dict[str, Any] = dict(
        name=actor_name(name, user),
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
    return MCPProcess.options(**options).remote(name, server.model_dump(), values, user)  # type: ignore[attr-defined]


def _end_shared_actor(name: str, namespace: str) -> None:
    """A server now per_user may still have its shared actor from an earlier config: end it, so no
    process keeps serving one folder to every user."""
    try:
        actor = ray.get_actor(actor_name(name), namespace=namespace)
    except ValueError:
        return
    logger.warning("MCP server %r is per user now: ending its shared actor", name)
    ray.kill(actor, no_restart=True)


async def connect_gateway(settings: Settings, *, namespace: str = NAMESPACE, timeout_s: float = 30.0) -> MCPGateway:
    """Get or create one detached actor per enabled server, hand each the current config,
    and return the gateway a replica uses to reach them. `namespace` keeps separate
    deployments or test runs apart."""
    config = load_config(settings.mcp_config)
    values = shared_placeholders(settings.data_dir, config.config_dir)
    actors = {
        name: await asyncio.to_thread(get_or_create, name, server, values, namespace)
        for name, server in config.enabled().items()
        if server.scope == "shared"
    }
    for name, server in config.enabled().items():
        if server.scope == "per_user":
            await asyncio.to_thread(_end_shared_actor, name, namespace)

    def spawn(name: str, server: ServerConfig, user_values: dict[str, str], user: str) -> Any:
        return get_or_create(name, server, user_values, namespace, user)

    gateway = MCPGateway(settings, config, actors, values=values, spawn=spawn)
    await gateway.configure(timeout_s=timeout_s)
    return gateway
