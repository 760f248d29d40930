"""Durable tasks as the API shows them: submissions, tasks, their events, orchestrations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sutazai.schemas.agents import AgentName
from sutazai.schemas.common import MAX_TEXT, Text
from sutazai.storage.tasks import TaskKind, TaskStatus

IdempotencyKey = Text


class _Submission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Text = Field(min_length=1, max_length=MAX_TEXT)
    idempotency_key: IdempotencyKey | None = Field(default=None, min_length=1, max_length=200)
    priority: int = Field(default=0, ge=-100, le=100)  # higher runs first
    wait: bool = False  # hold the request until the task ends (up to wait_timeout_s), else 202 at once
    wait_timeout_s: float = Field(default=60.0, gt=0, le=3600)


class TaskCreate(_Submission):
    agent: AgentName


class AgentRun(_Submission):
    """POST /api/v1/agents/{name}/run: the agent is the path's."""


class OrchestrateRequest(_Submission):
    """Fan out to several agents: each named agent gets the input, or a coordinator agent
    plans a sub-task per agent; the results are combined (by the coordinator when there is one)."""

    agents: list[AgentName] = Field(min_length=1, max_length=16)
    coordinator: AgentName | None = None
    max_subtasks: int = Field(default=8, ge=1, le=16)

    @field_validator("agents")
    @classmethod
    def _unique(cls, agents: list[str]) -> list[str]:
        if len(set(agents)) != len(agents):
            raise ValueError("agents lists an agent twice")
        return agents


class TaskOut(BaseModel):
    id: uuid.UUID
    kind: TaskKind
    agent: str | None
    status: TaskStatus
    input: str
    priority: int
    idempotency_key: str | None
    attempts: int
    max_attempts: int
    cancel_requested: bool
    parent_id: uuid.UUID | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    usage: dict[str, Any]
    events: int = Field(description="events so far; the last one's seq")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    owner_id: uuid.UUID
    children: list[uuid.UUID] | None = None  # orchestrations


class TaskEventOut(BaseModel):
    seq: int
    attempt: int
    type: str
    data: dict[str, Any]
    created_at: datetime
