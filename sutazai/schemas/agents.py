"""What an agent is: a definition (prompt, model, the MCP tools it may use, limits, sampling).

Definitions come from Markdown files with YAML front matter (`sutazai.agents.definitions`)
or from the admin API; both end up as this model, stored in Postgres, and snapshotted into
each task so that a running task never sees its agent change under it.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sutazai.schemas.common import Text

AGENT_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
TOOL_PATTERN = re.compile(r"^([A-Za-z0-9_-]{1,64})/(\*|[A-Za-z0-9_.-]{1,128})$")  # "server/tool" or "server/*"

AgentName = Annotated[str, Field(pattern=AGENT_NAME)]


class AgentSampling(BaseModel):
    """Sampling for the agent's model turns; unset values come from the model file."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)


class AgentDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: AgentName
    description: Text = Field(min_length=1, max_length=2000)
    system_prompt: Text = Field(min_length=1, max_length=32_000)
    model: str | None = Field(default=None, max_length=128)  # None: the default model
    tools: list[str] = Field(default_factory=list, max_length=64)  # "server/tool" or "server/*"
    max_steps: int = Field(default=8, ge=1, le=64)  # model turns, each maybe with tool calls
    timeout_s: float = Field(default=120.0, gt=0, le=3600)  # one attempt, all steps
    sampling: AgentSampling = Field(default_factory=AgentSampling)

    @field_validator("tools")
    @classmethod
    def _tool_patterns(cls, tools: list[str]) -> list[str]:
        for tool in tools:
            if not TOOL_PATTERN.match(tool):
                raise ValueError(f"tool {tool!r} must be 'server/tool' or 'server/*'")
        if len(set(tools)) != len(tools):
            raise ValueError("tools lists a tool twice")
        return tools

    def allows(self, server: str, tool: str) -> bool:
        return f"{server}/*" in self.tools or f"{server}/{tool}" in self.tools

    def servers(self) -> list[str]:
        """The MCP servers this agent uses, in the order its tools name them."""
        return list(dict.fromkeys(t.split("/", 1)[0] for t in self.tools))
