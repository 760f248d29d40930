"""The MCP servers file: the `{"mcpServers": {...}}` shape desktop MCP clients use.

A file written for Claude Desktop or another client loads as is; SutazAI's own
options (timeouts, concurrency, restart policy, roles, Ray placement) sit beside
`command`/`args`/`env`/`cwd` in each entry and all have defaults.

Paths may use `${NAME}` placeholders so one file works on every machine:
`${PYTHON}` (the interpreter running the MCP actor), `${PROJECT_ROOT}`,
`${DATA_DIR}` (settings.data_dir), `${CONFIG_DIR}` (the folder of this file),
`${USER_DIR}` (the calling user's own folder, `per_user` servers only), or any
environment variable. They are expanded in the actor, on the node that runs
the server, because that is where the paths must exist.

A server that keeps state for its callers (files, a memory graph) must not be
shared between users: `"scope": "per_user"` runs one process per user, started
on first use and stopped when idle. Known stateful servers get it by default,
and known servers with write tools get a read-only `tools_allowed`, so a file
pasted from a desktop client does not share one folder among every user.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
BUILTIN_PLACEHOLDERS = ("PYTHON", "PROJECT_ROOT", "DATA_DIR", "CONFIG_DIR")
USER_PLACEHOLDER = "USER_DIR"
USER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # goes into a folder name and an actor name

Scope = Literal["shared", "per_user"]

# Defaults for servers recognised by their package name in command/args (see `package_of`).
GIT_READ_TOOLS = ["git_status", "git_diff_unstaged", "git_diff_staged", "git_diff", "git_log", "git_show", "git_branch"]
KNOWN_PACKAGES: dict[str, dict] = {
    "server-filesystem": {"scope": "per_user"},
    "server-memory": {"scope": "per_user", "env": {"MEMORY_FILE_PATH": "${USER_DIR}/memory.jsonl"}},
    "server-git": {"tools_allowed": GIT_READ_TOOLS},
}


class RestartPolicy(BaseModel):
    """How the actor brings a dead server back: exponential backoff, bounded."""

    model_config = ConfigDict(extra="forbid")

    # Consecutive failed starts (or crashes) before the server is marked failed;
    # an admin restart resets the count. -1: never give up.
    max_restarts: int = Field(default=10, ge=-1)
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    # A server that stayed up this long counts as healthy again: the backoff restarts.
    stable_after_s: float = Field(default=30.0, ge=0)


class Prepare(BaseModel):
    """A command run before the server starts when `creates` does not exist yet (e.g. a clone it serves)."""

    model_config = ConfigDict(extra="forbid")

    creates: str
    command: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=300.0, gt=0)


class ServerConfig(BaseModel):
    """One entry of `mcpServers`."""

    model_config = ConfigDict(extra="forbid")

    # Desktop-client fields.
    type: Literal["stdio"] = "stdio"  # only stdio servers are run as processes
    command: str
    args: list[str] = []
    env: dict[str, str] = {}
    cwd: str | None = None

    # SutazAI options.
    enabled: bool = True
    call_timeout_s: float = Field(default=30.0, gt=0)
    start_timeout_s: float = Field(default=30.0, gt=0)  # spawn + initialize + tools/list
    max_concurrent_calls: int = Field(default=16, ge=1)
    restart: RestartPolicy = RestartPolicy()
    roles: list[str] = ["admin", "user"]  # roles allowed to list and call its tools
    ensure_dirs: list[str] = []  # folders created before the server starts (e.g. its data folder)
    prepare: Prepare | None = None
    # shared: one process for every caller; per_user: one per user, with ${USER_DIR} its own folder.
    scope: Scope = "shared"
    idle_timeout_s: float = Field(default=300.0, gt=0)  # a per_user process stops after this long unused
    tools_allowed: list[str] | None = None  # None: every tool the server lists
    max_result_bytes: int = Field(default=1024 * 1024, ge=1024)  # larger results are truncated, with a note

    # Ray placement of the actor that owns the process. `num_cpus` stays 0: the
    # actor only relays JSON; use `resources` (e.g. {"node:10.0.0.5": 0.01}) or
    # `node_id` to pin a server to the node that has its files or tools.
    num_cpus: float = Field(default=0.0, ge=0)
    resources: dict[str, float] = {}
    node_id: str | None = None

    @model_validator(mode="after")
    def _known_package_defaults(self) -> ServerConfig:
        """Options the file leaves out take the defaults of a recognised server package."""
        defaults = KNOWN_PACKAGES.get(package_of(self.command, self.args) or "", {})
        if "scope" not in self.model_fields_set and "scope" in defaults:
            self.scope = defaults["scope"]
        if "tools_allowed" not in self.model_fields_set and "tools_allowed" in defaults:
            self.tools_allowed = list(defaults["tools_allowed"])
        if self.scope == "per_user":
            self.env = {**defaults.get("env", {}), **self.env}
        return self

    def allows(self, tool: str) -> bool:
        return self.tools_allowed is None or tool in self.tools_allowed

    def placeholders(self) -> set[str]:
        """Every `${NAME}` used by this entry."""
        texts = [self.command, *self.args, *self.env.values(), *self.ensure_dirs]
        if self.cwd:
            texts.append(self.cwd)
        if self.prepare:
            texts.extend([self.prepare.creates, *self.prepare.command])
        return {m.group(1) for text in texts for m in PLACEHOLDER.finditer(text)}

    def fingerprint(self) -> str:
        """Stable hash of the entry, so a running actor can tell it was reconfigured."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class MCPConfig(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="allow")  # desktop clients keep other top-level keys

    mcp_servers: dict[str, ServerConfig] = Field(default_factory=dict, alias="mcpServers")
    config_dir: str = ""  # folder of the file, for ${CONFIG_DIR}; set by load_config

    @model_validator(mode="after")
    def _names_and_placeholders(self) -> MCPConfig:
        for name, server in self.mcp_servers.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
                raise ValueError(f"MCP server name {name!r}: use letters, digits, '-', '_' or '.' (at most 64)")
            known = (*BUILTIN_PLACEHOLDERS, USER_PLACEHOLDER) if server.scope == "per_user" else BUILTIN_PLACEHOLDERS
            unknown = {p for p in server.placeholders() if p not in known and p not in os.environ}
            if unknown:
                raise ValueError(f"MCP server {name!r} uses unknown placeholders: {', '.join(sorted(unknown))}")
        return self

    def enabled(self) -> dict[str, ServerConfig]:
        return {name: s for name, s in self.mcp_servers.items() if s.enabled}


def load_config(path: str | Path) -> MCPConfig:
    """Read and validate the servers file; a missing file means no servers."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        return MCPConfig(config_dir=str(path.parent))
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    config = MCPConfig.model_validate(raw)
    config.config_dir = str(path.parent)
    return config


def shared_placeholders(data_dir: str | Path, config_dir: str | Path) -> dict[str, str]:
    """Placeholders the gateway decides for the whole cluster: the data folder and the config folder."""
    return {"DATA_DIR": str(Path(data_dir).expanduser().resolve()), "CONFIG_DIR": str(config_dir)}


def user_placeholders(values: dict[str, str], user: str) -> dict[str, str]:
    """The shared placeholders plus `${USER_DIR}`: the user's own folder under the data folder."""
    if not USER_ID.fullmatch(user):
        raise ValueError(f"user id {user!r}: use letters, digits, '-' or '_' (at most 64)")
    return {**values, USER_PLACEHOLDER: str(Path(values["DATA_DIR"]) / "users" / user)}


def package_of(command: str, args: list[str]) -> str | None:
    """The known server package a command line runs, if any: `npx -y @modelcontextprotocol/server-memory`,
    `.../node_modules/.bin/mcp-server-filesystem`, `python -m mcp_server_git` and `uvx mcp-server-git@1.0`
    all name theirs the same way."""
    for token in (command, *args):
        name = token.rsplit("/", 1)[-1].split("@", 1)[0].replace("_", "-").removeprefix("mcp-")
        if name in KNOWN_PACKAGES:
            return name
    return None


def local_placeholders() -> dict[str, str]:
    """Placeholders only the spawning process knows: its interpreter and where the code is."""
    from sutazai.settings import PROJECT_ROOT

    return {"PYTHON": sys.executable, "PROJECT_ROOT": str(PROJECT_ROOT)}


def expand(text: str, values: dict[str, str]) -> str:
    """Replace `${NAME}` with values[NAME], else the environment variable NAME."""

    def one(match: re.Match) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        if name in os.environ:
            return os.environ[name]
        raise ValueError(f"unknown placeholder ${{{name}}}")

    return PLACEHOLDER.sub(one, text)


def expand_server(server: ServerConfig, values: dict[str, str]) -> ServerConfig:
    """A copy of the entry with every placeholder in command/args/env/cwd/ensure_dirs/prepare expanded.

    A per_user server with no `cwd` runs in its user's folder.
    """
    cwd = server.cwd or ("${USER_DIR}" if server.scope == "per_user" else None)
    prepare = server.prepare
    if prepare is not None:
        prepare = prepare.model_copy(
            update={"creates": expand(prepare.creates, values), "command": [expand(c, values) for c in prepare.command]}
        )
    return server.model_copy(
        update={
            "command": expand(server.command, values),
            "args": [expand(a, values) for a in server.args],
            "env": {k: expand(v, values) for k, v in server.env.items()},
            "cwd": expand(cwd, values) if cwd else None,
            "ensure_dirs": [expand(d, values) for d in server.ensure_dirs],
            "prepare": prepare,
        }
    )
