"""Tool-call round trip through an agent (model turn excluded) vs a direct MCP call.

  direct   MCPGateway.execute -> the time server's Ray actor -> stdio (what /api/v1/mcp/execute does)
  agent    one agent step's tool call as the agent loop makes it: record `tool_call` in Postgres,
           the same gateway call, record `tool_result` (both fenced by the task's attempt)

The agent's model is a stand-in that answers instantly with the next tool call, so the
figure is the loop's own cost per tool call; real model turns are measured elsewhere
(bench/llm_throughput.py). Real Postgres, real Ray actors, the real PyPI time server.

    .venv/bin/python bench/agent_tools.py [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import asyncpg
import ray

from deployments.mcp_process import connect_gateway
from sutazai.agents.loop import ModelReply, run_agent
from sutazai.agents.toolbox import GatewayTools, discover_tools
from sutazai.schemas.agents import AgentDefinition, AgentSampling
from sutazai.schemas.engine import ChatMessage, Usage
from sutazai.settings import Settings
from sutazai.storage.db import create_pool
from sutazai.storage.tasks import NewTask, Task, TaskStore

ARGUMENTS = {"timezone": "Europe/Paris"}


class InstantModel:
    """Calls get_current_time `calls` times, then answers: no model cost at all."""

    def __init__(self, calls: int) -> None:
        self.left = calls

    async def complete(
        self, messages: list[ChatMessage], json_schema: dict[str, Any] | None, sampling: AgentSampling
    ) -> ModelReply:
        self.left -= 1
        if self.left >= 0:
            return ModelReply(json.dumps({"tool": "get_current_time", "arguments": ARGUMENTS}), Usage(), "stop")
        return ModelReply(json.dumps({"content": "done"}), Usage(), "stop")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(name: str, ms: list[float]) -> str:
    return f"{name:<8} | {statistics.median(ms):>8.2f} | {percentile(ms, 0.99):>8.2f} | {statistics.mean(ms):>8.2f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()

    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"bench_agent_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = base.rsplit("/", 1)[0] + f"/{name}"
    data = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    config = data / "servers.json"
    config.write_text(json.dumps({"mcpServers": {"time": {"command": "${PYTHON}", "args": ["-m", "mcp_server_time"]}}}))
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING", namespace="sutazai-bench")
    gateway = await connect_gateway(Settings(data_dir=data, mcp_config=config), namespace="sutazai-bench")
    try:
        await gateway.wait_ready(timeout=60)
        pool = await create_pool(url)
        store = TaskStore(pool)
        owner = uuid.uuid4()
        await pool.execute("INSERT INTO users (id, username, password_hash, role) VALUES ($1, 'b', 'x', 'user')", owner)

        for _ in range(20):  # warm-up
            await gateway.execute("time", "get_current_time", ARGUMENTS, "user", user=owner.hex)
        direct = []
        for _ in range(args.calls):
            started = time.perf_counter()
            await gateway.execute("time", "get_current_time", ARGUMENTS, "user", user=owner.hex)
            direct.append((time.perf_counter() - started) * 1000)

        per_run = 40  # tool calls per agent run (max_steps is at most 64)
        definition = AgentDefinition(
            name="bench",
            description="bench",
            system_prompt="bench",
            tools=["time/get_current_time"],
            max_steps=per_run + 1,
        )
        tools = await discover_tools(gateway, definition, role="user", user=owner.hex)
        runner = GatewayTools(gateway, role="user", user=owner.hex)
        through_agent: list[float] = []
        while len(through_agent) < args.calls:
            new = NewTask(owner_id=owner, kind="agent", agent="bench", definition=definition.model_dump(), input="x")
            await store.submit(new)
            [task] = await store.claim("bench", limit=1, kinds=["agent"], lease_s=300, per_agent=1)
            began: list[float] = []

            async def record(type: str, data: dict[str, Any], task: Task = task, began: list[float] = began) -> None:
                if type == "tool_call":
                    began.append(time.perf_counter())
                await store.record(task.id, task.attempts, type, data)
                if type == "tool_result":
                    through_agent.append((time.perf_counter() - began[-1]) * 1000)

            result = await run_agent(definition, "x", tools, InstantModel(per_run), runner, record)
            await store.finish(task.id, task.attempts, "succeeded", result={"answer": result.answer})
        await pool.close()
    finally:
        await gateway.shutdown()
        ray.shutdown()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    print(f"\ntool call round trip, {args.calls} sequential calls of time/get_current_time (ms)\n")
    print(f"{'path':<8} | {'p50':>8} | {'p99':>8} | {'mean':>8}")
    print(f"{'-' * 8} | {'-' * 8} | {'-' * 8} | {'-' * 8}")
    print(row("direct", direct))
    print(row("agent", through_agent))
    print(f"\nagent / direct (p50): {statistics.median(through_agent) / statistics.median(direct):.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
