"""Shapes of the agents API (`/api/v1/agents`); the definition itself is `sutazai.schemas.agents`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sutazai.schemas.agents import AgentDefinition

AgentSource = Literal["file", "api"]


class AgentOut(AgentDefinition):
    """An agent as stored: its definition, where it comes from, and when it changed."""

    source: AgentSource  # 'file': a Markdown file in the agents folder (read-only here); 'api': made here
    path: str | None  # the file, for source 'file'
    created_at: datetime
    updated_at: datetime
