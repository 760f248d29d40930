"""A same-node lane for tool calls: the MCP actor serves them on a Unix socket besides Ray.

Why: a Ray actor call costs 1.5-2.3 ms round trip on a 2-core node (bench/mcp_latency.py:
gateway 3.7 ms against 1.4 ms for a direct session), more than the tool call itself. A
gateway on the actor's node sends `call_tool` over the actor's socket instead (~0.1 ms);
everything else (configure, listings, restarts, health) and every caller on another node
stays on Ray. Ray still owns the actor's life: the lane dies with its process.

Who may connect: the socket is a file in a folder only our user can enter (0700) with mode
0600, and a connection must first send the secret the actor hands out over Ray.

Frames are a 4-byte big-endian length and a UTF-8 JSON object. After the secret, the client
sends `{"id", "tool", "arguments", "timeout"}` and gets `{"id", "result"}` or
`{"id", "error": {"type", "message"}}`; calls on one connection run concurrently. A
connection lost after a call was written is `LaneLost`: the tool may have run, so the call
is never sent again (the same rule as for Ray: tool calls are never retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import secrets
import stat
import struct
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sutazai.mcp.errors import CallTimedOut, InstanceRetired, ServerUnavailable

logger = logging.getLogger("sutazai.mcp.lane")

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024  # a result is capped by the server's max_result_bytes well below this
CONNECT_TIMEOUT_S = 2.0
ERRORS: dict[str, type[ServerUnavailable]] = {
    cls.__name__: cls for cls in (ServerUnavailable, CallTimedOut, InstanceRetired)
}

# (tool, arguments, timeout) -> the actor's result dict; raises ServerUnavailable (or a subclass).
CallTool = Callable[[str, dict, float], Awaitable[dict]]


class LaneLost(Exception):
    """The connection ended while a call was under way: it may have run."""


class LaneRefused(Exception):
    """No connection could be made (nothing was sent): use Ray instead."""


def socket_folder() -> Path:
    """The folder of this user's lane sockets: made 0700, refused if someone else owns it."""
    folder = Path(tempfile.gettempdir()) / f"sutazai-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{folder} is not a private folder of this user; MCP lanes are off")
    return folder


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    size = HEADER.unpack(await reader.readexactly(HEADER.size))[0]
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    return json.loads(await reader.readexactly(size))


def _frame(message: dict) -> bytes:
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return HEADER.pack(len(body)) + body


class LaneServer:
    """The actor's side: serves `call_tool` on a private Unix socket while open."""

    def __init__(self, call_tool: CallTool) -> None:
        self._call_tool = call_tool
        self._secret = secrets.token_hex(16)
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task] = set()
        self.path: Path | None = None

    async def start(self) -> None:
        folder = socket_folder()
        _remove_stale(folder)
        path = folder / f"mcp-{os.getpid()}.sock"
        path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, path=str(path), limit=2**20)
        os.chmod(path, 0o600)
        self.path = path

    def endpoint(self) -> dict | None:
        """What a gateway needs to connect, or None while not serving."""
        if self._server is None or self.path is None:
            return None
        return {"path": str(self.path), "secret": self._secret}

    async def close(self) -> None:
        """Stop listening and end every connection (their calls in flight are cancelled)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._connections.add(me)
        tasks: set[asyncio.Task] = set()
        try:
            hello = await asyncio.wait_for(_read_frame(reader), CONNECT_TIMEOUT_S)
            if not isinstance(hello, dict) or not secrets.compare_digest(str(hello.get("secret")), self._secret):
                return
            writer.write(_frame({"ok": True}))
            while True:
                request = await _read_frame(reader)
                task = asyncio.create_task(self._answer(request, writer))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, ValueError):
            pass  # the gateway went away (or spoke nonsense): its calls run on, their answers are dropped
        except asyncio.CancelledError:  # close(): the calls of this connection end with it
            for task in tasks:
                task.cancel()
        finally:
            self._connections.discard(me)
            writer.close()

    async def _answer(self, request: dict, writer: asyncio.StreamWriter) -> None:
        ident = request.get("id")
        try:
            result = await self._call_tool(request["tool"], request.get("arguments") or {}, request["timeout"])
            reply: dict = {"id": ident, "result": result}
        except ServerUnavailable as exc:
            reply = {"id": ident, "error": {"type": type(exc).__name__, "message": str(exc)}}
        except Exception as exc:  # not the tool's failure (that is a result): the gateway answers 503
            logger.exception("MCP lane call failed")
            reply = {"id": ident, "error": {"type": "internal", "message": f"{type(exc).__name__}: {exc}"}}
        if not writer.is_closing():
            writer.write(_frame(reply))


def _remove_stale(folder: Path) -> None:
    """Sockets left by actor processes that died without closing theirs (named by pid)."""
    for path in folder.glob("mcp-*.sock"):
        try:
            pid = int(path.stem.removeprefix("mcp-"))
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            continue


class LaneClient:
    """The gateway's side: one connection to one actor, calls multiplexed by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[dict]] = {}
        self._receiver = asyncio.create_task(self._receive())

    @classmethod
    async def connect(cls, endpoint: dict) -> LaneClient:
        """Raises LaneRefused when the socket cannot be reached or does not take the secret."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(endpoint["path"], limit=2**20)
                writer.write(_frame({"secret": endpoint["secret"]}))
                if (await _read_frame(reader)).get("ok") is not True:
                    writer.close()
                    raise LaneRefused("the actor refused the connection")
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            raise LaneRefused(f"{type(exc).__name__}: {exc}") from None
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        return self._receiver.done()

    async def call(self, tool: str, arguments: dict, timeout: float) -> dict:
        """The actor's result; raises its ServerUnavailable (or subclass), or LaneLost."""
        if self.closed:
            raise LaneLost("the connection to the MCP actor is closed")
        ident = next(self._ids)
        future: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        try:
            self._writer.write(_frame({"id": ident, "tool": tool, "arguments": arguments, "timeout": timeout}))
            reply = await future
        finally:
            self._pending.pop(ident, None)
        if "error" in reply:
            error = reply["error"]
            raise ERRORS.get(error["type"], ServerUnavailable)(error["message"])
        return reply["result"]

    def abandon(self) -> None:
        """Close the connection; calls still waiting on it fail with LaneLost."""
        self._receiver.cancel()
        self._fail_pending("the lane was closed")
        self._writer.close()

    def _fail_pending(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(LaneLost(reason))

    async def _receive(self) -> None:
        reason = "the connection to the MCP actor failed"
        try:
            while True:
                reply = await _read_frame(self._reader)
                future = self._pending.get(reply.get("id"))
                if future is not None and not future.done():
                    future.set_result(reply)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            reason = f"the connection to the MCP actor ended ({type(exc).__name__})"
        except asyncio.CancelledError:
            reason = "the lane was closed"
            raise
        finally:
            self._fail_pending(reason)
            self._writer.close()
