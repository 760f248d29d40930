"""Agent definitions from a folder of Markdown files with YAML front matter.

The format is Claude Code's subagents (`.claude/agents/*.md`), so such a file drops in:

    ---
    name: assistant                      # absent: the file's stem
    description: General assistant that can tell the time
    tools: time/get_current_time, time/convert_time   # a comma-separated string or a YAML list
    model: inherit                       # inherit / absent: the default model
    max_steps: 6
    timeout_s: 60
    temperature: 0.2                     # also top_p, max_tokens; or a `sampling:` mapping
    ---
    The system prompt is the Markdown body.

Unknown front-matter keys are ignored. A `model` the catalog does not serve (Claude's
`sonnet`, `opus`, `haiku`) means the default model, with a warning. Tools must be MCP
tools, `server/tool` or `server/*`, of an enabled server that allows them; a Claude tool
name (`Read`, `Grep`, `Bash`) is a load error for its file, as is invalid YAML or a bad value.
One bad file never stops the others from loading.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sutazai.errors import InvalidInput
from sutazai.mcp.config import MCPConfig
from sutazai.schemas.agents import TOOL_PATTERN, AgentDefinition

logger = logging.getLogger("sutazai.agents")

SAMPLING_KEYS = ("temperature", "top_p", "max_tokens")
DEFAULT_MODEL_WORDS = {"inherit", "default"}


@dataclass(frozen=True)
class LoadedAgent:
    definition: AgentDefinition
    path: Path


@dataclass(frozen=True)
class LoadError:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class DefinitionError(ValueError):
    """One file's problem; becomes its `LoadError`."""


BUILTIN_TOOLS = ("documents/search", "documents/*")  # the caller's own documents (sutazai.agents.toolbox)


def tool_problem(tools: list[str], mcp: MCPConfig | None) -> str | None:
    """Why `tools` are not usable MCP tools of `mcp`, or None when they all are."""
    tools = [t for t in tools if t not in BUILTIN_TOOLS]  # served by the runner itself, not by MCP
    if not tools:
        return None
    if mcp is None:
        return f"tools need MCP, but MCP is disabled: {', '.join(tools)}"
    servers = mcp.enabled()
    unknown: list[str] = []
    refused: list[str] = []
    for tool in tools:
        match = TOOL_PATTERN.match(tool)
        if match is None or match.group(1) not in servers:
            unknown.append(tool)
        elif match.group(2) != "*" and not servers[match.group(1)].allows(match.group(2)):
            refused.append(tool)
    if unknown:
        names = ", ".join(servers) or "none enabled"
        return f"tools name no MCP tool: {', '.join(unknown)} (use server/tool or server/*, servers: {names})"
    if refused:
        allowed = {
            server: ", ".join(servers[server].tools_allowed or []) or "none"
            for server in dict.fromkeys(t.split("/", 1)[0] for t in refused)
        }
        detail = "; ".join(f"{server} allows: {names}" for server, names in allowed.items())
        return f"tools not allowed by their server's tools_allowed: {', '.join(refused)} ({detail})"
    return None


def check_tools(definition: AgentDefinition, mcp: MCPConfig | None) -> None:
    """`InvalidInput` unless every tool of the definition is an allowed tool of an enabled MCP server."""
    problem = tool_problem(definition.tools, mcp)
    if problem:
        raise InvalidInput(problem, code="invalid_tools")


def split_front_matter(text: str) -> tuple[str, str]:
    """(the YAML between the `---` lines, the body after them)."""
    lines = text.lstrip("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise DefinitionError("no YAML front matter: the file must start with a '---' line")
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return "".join(lines[1:i]), "".join(lines[i + 1 :])
    raise DefinitionError("the YAML front matter has no closing '---' line")


def _tools(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return [t.strip() for t in value if t.strip()]
    raise DefinitionError("tools: give a comma-separated string or a list of strings")


def _model(value: Any, known_models: set[str], path: Path) -> Any:
    if value is None or (isinstance(value, str) and value.strip().lower() in DEFAULT_MODEL_WORDS):
        return None
    if isinstance(value, str) and value not in known_models:
        served = ", ".join(sorted(known_models)) or "none"
        logger.warning(
            "%s: model %r is not served here (served: %s); the agent uses the default model", path, value, served
        )
        return None
    return value


def _field_errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'definition'}: {err['msg']}" for err in exc.errors())


def parse_agent(text: str, path: Path, known_models: set[str], mcp: MCPConfig | None) -> AgentDefinition:
    """One file's definition; `DefinitionError` saying what is wrong."""
    front, body = split_front_matter(text)
    try:
        meta = yaml.safe_load(front)
    except yaml.YAMLError as exc:
        raise DefinitionError(f"invalid YAML front matter: {exc}") from None
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise DefinitionError("the YAML front matter must be a mapping of keys to values")
    tools = _tools(meta.get("tools"))
    problem = tool_problem(tools, mcp)
    if problem:
        raise DefinitionError(problem)
    sampling = meta.get("sampling") or {}
    if not isinstance(sampling, dict):
        raise DefinitionError("sampling: give a mapping (temperature, top_p, max_tokens)")
    sampling = {**sampling, **{k: meta[k] for k in SAMPLING_KEYS if k in meta}}
    values: dict[str, Any] = {
        "name": meta.get("name", path.stem),
        "description": meta.get("description"),
        "system_prompt": body.strip(),
        "model": _model(meta.get("model"), known_models, path),
        "tools": tools,
        "sampling": sampling,
    }
    values.update({k: meta[k] for k in ("max_steps", "timeout_s") if meta.get(k) is not None})
    try:
        return AgentDefinition.model_validate(values)
    except ValidationError as exc:
        raise DefinitionError(_field_errors(exc)) from None


def load_agent_files(
    folder: Path, mcp: MCPConfig | None, known_models: set[str]
) -> tuple[list[LoadedAgent], list[LoadError]]:
    """Every `*.md` of `folder` (in name order) as a definition, or an error for its file.

    A missing folder has no agents. Two files of one name: the later one is an error."""
    loaded: list[LoadedAgent] = []
    errors: list[LoadError] = []
    folder = Path(folder)
    if not folder.is_dir():
        return loaded, errors
    seen: dict[str, Path] = {}
    for path in sorted(folder.glob("*.md")):
        try:
            definition = parse_agent(path.read_text(encoding="utf-8"), path, known_models, mcp)
        except (DefinitionError, OSError, UnicodeDecodeError) as exc:
            errors.append(LoadError(path, str(exc)))
            continue
        if definition.name in seen:
            errors.append(
                LoadError(path, f"agent name {definition.name!r} is already defined in {seen[definition.name]}")
            )
            continue
        seen[definition.name] = path
        loaded.append(LoadedAgent(definition, path))
    return loaded, errors
