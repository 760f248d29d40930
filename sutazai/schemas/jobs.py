"""Batch jobs as the API shows them: a submission (JSON prompts; a JSONL upload is the
multipart alternative) and a job with its Ray status and progress."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from sutazai.schemas.common import MAX_TEXT, Text

JobStatus = Literal["PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED", "UNKNOWN"]


class BatchJobCreate(BaseModel):
    """POST /api/v1/jobs/batch as JSON: the prompts become input lines with ids "0", "1", ..."""

    model_config = ConfigDict(extra="forbid")

    prompts: list[Annotated[Text, Field(min_length=1, max_length=MAX_TEXT)]] = Field(min_length=1)
    model: Text | None = Field(default=None, max_length=64)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)


class JobProgress(BaseModel):
    done: int  # result lines written
    total: int  # input lines
    fraction: float


class BatchJobOut(BaseModel):
    id: str
    model: str
    status: JobStatus  # Ray's job status; UNKNOWN when the cluster no longer knows the job
    message: str | None = None
    progress: JobProgress
    created_at: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    results_url: str
    log_tail: str | None = None  # GET /api/v1/jobs/{id} only
