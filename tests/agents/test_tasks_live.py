"""Agents as durable tasks through the running Serve app: the real CPU model, the real
time MCP server, runner actors on Ray, the queue in Postgres."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
import ray

pytestmark = pytest.mark.integration

CLOCK_AGENT = {
    "description": "Tells the time anywhere by calling the time tool.",
    "system_prompt": (
        "You answer questions about the current time. Call get_current_time with the IANA timezone "
        "the user asks about, then answer with the time it returned."
    ),
    "tools": ["time/get_current_time"],
    "max_steps": 2,
    "timeout_s": 120,
    "sampling": {"temperature": 0, "max_tokens": 48},
}
TALKER_AGENT = {
    "description": "Answers in plain text, no tools.",
    "system_prompt": "You are a helpful assistant. Answer briefly.",
    "max_steps": 1,
    "timeout_s": 120,
    "sampling": {"temperature": 0, "max_tokens": 24},
}
# Never answers before its steps run out: a tool call every step (for cancelling one mid-run).
LOOPER_AGENT = CLOCK_AGENT | {"max_steps": 30, "description": "Calls the time tool again and again."}


@pytest.fixture(scope="module")
def agents(admin_api):
    """Test agents made through the admin API: name by kind."""
    names = {}
    for kind, body in {"clock": CLOCK_AGENT, "talker": TALKER_AGENT, "looper": LOOPER_AGENT}.items():
        name = f"test-{kind}-{uuid.uuid4().hex[:6]}"
        r = admin_api.post("/api/v1/agents", json=body | {"name": name})
        assert r.status_code == 201, r.text
        names[kind] = name
    yield names
    for name in names.values():
        admin_api.delete(f"/api/v1/agents/{name}")


def events_of(
    api: httpx.Client, task_id: str, last_event_id: str | None = None, limit: int | None = None
) -> list[dict]:
    """The task's SSE stream as (id, event, data) dicts, until it ends (or `limit` events)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    out: list[dict] = []
    with api.stream("GET", f"/api/v1/tasks/{task_id}/events", headers=headers, timeout=120) as r:
        assert r.status_code == 200, r.read()
        current: dict = {}
        for line in r.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if current.get("event") == "end":
                    return out
                if current:
                    out.append(current)
                    if limit is not None and len(out) >= limit:
                        return out
                current = {}
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            current[field] = json.loads(value) if field == "data" else value
    return out


def wait_ended(api: httpx.Client, task_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        task = api.get(f"/api/v1/tasks/{task_id}").json()
        if task["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return task
        time.sleep(0.2)


def test_an_agent_that_needs_the_time_calls_the_time_server_and_answers(api, agents):
    r = api.post(
        f"/api/v1/agents/{agents['clock']}/run",
        json={"input": "What time is it in Asia/Tokyo right now?", "wait": True, "wait_timeout_s": 120},
    )
    assert r.status_code == 200, r.text
    task = r.json()
    assert task["status"] == "succeeded", (task["error"], task["result"])
    assert task["usage"]["prompt_tokens"] > 0 and task["result"]["answer"]
    events = [e["data"] for e in events_of(api, task["id"])]
    calls = [e for e in events if e["type"] == "tool_call"]
    results = [e for e in events if e["type"] == "tool_result"]
    assert calls and calls[0]["data"]["server"] == "time" and calls[0]["data"]["tool"] == "get_current_time"
    assert results[0]["data"]["is_error"] is False and "Asia/Tokyo" in results[0]["data"]["content"]


def test_a_submitted_task_answers_202_before_it_runs_and_is_stored(api, agents):
    r = api.post("/api/v1/tasks", json={"agent": agents["talker"], "input": "Say hello."})
    assert r.status_code == 202, r.text
    assert r.headers["Location"] == f"/api/v1/tasks/{r.json()['id']}"
    assert r.json()["status"] in ("queued", "running")
    assert wait_ended(api, r.json()["id"])["status"] == "succeeded"


def test_the_same_idempotency_key_returns_the_same_task(api, agents):
    body = {"agent": agents["talker"], "input": "Say hi.", "idempotency_key": uuid.uuid4().hex}
    first = api.post("/api/v1/tasks", json=body)
    again = api.post("/api/v1/tasks", json=body)
    assert first.json()["id"] == again.json()["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    listed = api.get("/api/v1/tasks", params={"limit": 100}).json()["items"]
    assert sum(1 for t in listed if t["idempotency_key"] == body["idempotency_key"]) == 1


def test_another_users_task_is_not_found_but_an_admin_sees_it(api, admin_api, new_user_headers, agents):
    task = api.post("/api/v1/tasks", json={"agent": agents["talker"], "input": "Hi."}).json()
    other = httpx.get(f"{api.base_url}/api/v1/tasks/{task['id']}", headers=new_user_headers("user"))
    assert other.status_code == 404
    assert admin_api.get(f"/api/v1/tasks/{task['id']}").status_code == 200


def test_a_viewer_cannot_submit_tasks(serve_app, new_user_headers, agents):
    r = httpx.post(
        f"{serve_app}/api/v1/tasks", headers=new_user_headers("viewer"), json={"agent": agents["talker"], "input": "x"}
    )
    assert r.status_code == 403


def test_detailed_health_shows_the_dispatcher_its_runners_and_the_queue(admin_api):
    dispatcher = admin_api.get("/api/v1/health/detailed").json()["components"]["task_dispatcher"]
    assert dispatcher["status"] == "ok"
    assert dispatcher["detail"]["runners"] >= 1 and set(dispatcher["detail"]["queue"]) == {"queued", "running"}


def test_an_unknown_agent_is_404(api):
    r = api.post("/api/v1/tasks", json={"agent": "no-such-agent", "input": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "agent_not_found"


def test_cancelling_a_running_task_stops_it_within_a_second(api, agents):
    task = api.post("/api/v1/tasks", json={"agent": agents["looper"], "input": "Time in Europe/Paris?"}).json()
    deadline = time.monotonic() + 60
    while api.get(f"/api/v1/tasks/{task['id']}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.0)  # mid-run: a model turn or a tool call in flight
    asked = time.monotonic()
    r = api.post(f"/api/v1/tasks/{task['id']}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"]
    while (current := api.get(f"/api/v1/tasks/{task['id']}").json())["status"] == "running":
        assert time.monotonic() - asked < 1.0, "still running a second after the cancel"
        time.sleep(0.05)
    assert current["status"] == "cancelled"
    assert api.post(f"/api/v1/tasks/{task['id']}/cancel").status_code == 409


def test_events_resume_after_last_event_id_without_gaps_or_duplicates(api, agents):
    task = api.post("/api/v1/tasks", json={"agent": agents["clock"], "input": "Time in UTC?"}).json()
    first = events_of(api, task["id"], limit=2)  # then the client drops
    rest = events_of(api, task["id"], last_event_id=first[-1]["id"])
    seqs = [int(e["id"]) for e in first + rest]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [e["event"] for e in first + rest] == [e["event"] for e in events_of(api, task["id"])]
    assert rest[-1]["event"] in ("succeeded", "failed")


def kill_runners_on(api: httpx.Client, task_id: str, event_type: str) -> datetime:
    """Follow the task's events and kill every runner actor the moment `event_type` arrives;
    returns when the kill was done (UTC)."""
    with api.stream("GET", f"/api/v1/tasks/{task_id}/events", timeout=120) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data:") and json.loads(line[5:])["type"] == event_type:
                break
        else:
            raise AssertionError(f"the task ended without a {event_type} event")
    runners = [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("agent-runner-")]
    assert runners
    for actor in runners:
        ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
    return datetime.now(UTC)


def test_a_killed_runner_actor_does_not_lose_the_task_or_repeat_its_tool_call(api, agents):
    # The runners are killed once the tool's result is recorded, before the answer. On a busy
    # machine the answer can still land first: such a try proves nothing, so another runs.
    for _ in range(3):
        task = api.post("/api/v1/tasks", json={"agent": agents["clock"], "input": "Time in America/New_York?"}).json()
        killed_at = kill_runners_on(api, task["id"], "tool_result")
        done = wait_ended(api, task["id"], timeout=120)
        finished = done["finished_at"] and datetime.fromisoformat(done["finished_at"])
        if not (done["status"] == "succeeded" and done["attempts"] == 1 and finished and finished < killed_at):
            break
    kinds = [(e["data"]["attempt"], e["data"]["type"]) for e in events_of(api, task["id"])]
    assert done["status"] == "succeeded" and done["attempts"] >= 2, (done["error"], done["result"], kinds)
    events = [e["data"] for e in events_of(api, task["id"])]
    first_call = next(e for e in events if e["type"] == "tool_call")["data"]["id"]
    assert sum(1 for e in events if e["type"] == "tool_call" and e["data"]["id"] == first_call) == 1
    assert sum(1 for e in events if e["type"] == "tool_result" and e["data"]["id"] == first_call) == 1
    assert sum(1 for e in events if e["type"] in ("succeeded", "failed", "cancelled")) == 1
    assert any(e["type"] == "retry" for e in events)


def test_orchestrate_runs_each_agent_and_combines_their_answers(api, agents):
    r = api.post(
        "/api/v1/orchestrate",
        json={
            "input": "Greet the user.",
            "agents": [agents["talker"], agents["clock"]],
            "wait": True,
            "wait_timeout_s": 180,
        },
    )
    assert r.status_code == 200, r.text
    parent = r.json()
    assert parent["status"] == "succeeded" and len(parent["children"]) == 2
    assert {c["agent"] for c in parent["result"]["children"]} == {agents["talker"], agents["clock"]}
    child_events = [e["data"] for e in events_of(api, parent["id"]) if e["event"] == "child"]
    assert {e["data"]["child_id"] for e in child_events} == {str(c) for c in parent["children"]}


def test_cancelling_an_orchestration_cancels_its_children(api, agents):
    parent = api.post(
        "/api/v1/orchestrate", json={"input": "Time in Asia/Tokyo?", "agents": [agents["looper"], agents["talker"]]}
    ).json()
    assert api.post(f"/api/v1/tasks/{parent['id']}/cancel").status_code == 200
    assert wait_ended(api, parent["id"], timeout=10)["status"] == "cancelled"
    for child in api.get(f"/api/v1/tasks/{parent['id']}").json()["children"]:
        assert wait_ended(api, str(child), timeout=10)["status"] == "cancelled"


def test_a_coordinator_plans_subtasks_for_the_named_agents_and_writes_the_answer(api, agents):
    r = api.post(
        "/api/v1/orchestrate",
        json={
            "input": "Say hello, then tell the time in UTC.",
            "agents": [agents["talker"], agents["clock"]],
            "coordinator": agents["talker"],
            "max_subtasks": 2,
            "wait": True,
            "wait_timeout_s": 240,
        },
    )
    assert r.status_code == 200, r.text
    parent = r.json()
    assert parent["status"] == "succeeded", (parent["error"], parent["result"])
    events = [e["data"] for e in events_of(api, parent["id"])]
    [plan] = [e["data"] for e in events if e["type"] == "plan"]
    assert 1 <= len(plan["subtasks"]) <= 2
    assert {s["agent"] for s in plan["subtasks"]} <= {agents["talker"], agents["clock"]}
    assert len(parent["children"]) == len(plan["subtasks"])
    assert any(e["type"] == "combine" for e in events) and parent["result"]["answer"]


async def statuses(database_url: str, ids: list[str]) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT status FROM tasks WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids])
    finally:
        await conn.close()
    return [r["status"] for r in rows]


def test_tasks_queued_across_an_app_restart_all_complete(api, agents, app_env):
    """Last in this module: the Serve app is deleted with tasks queued and running, then deployed again."""
    from ray import serve

    from deployments.app import build_app

    ids = [
        api.post("/api/v1/tasks", json={"agent": agents["clock"], "input": f"Time in Etc/GMT-{i}?"}).json()["id"]
        for i in range(4)
    ]
    serve.delete("sutazai")
    unfinished = asyncio.run(statuses(app_env["DATABASE_URL"], ids))
    assert set(unfinished) & {"queued", "running"}, f"every task ended before the app went down: {unfinished}"
    serve.run(build_app({"env": app_env}), name="sutazai", route_prefix="/")
    finished = [wait_ended(api, task_id, timeout=180) for task_id in ids]
    assert [t["status"] for t in finished] == ["succeeded"] * 4, finished
    for task in finished:
        events = [e["data"]["type"] for e in events_of(api, task["id"])]
        assert events.count("succeeded") == 1
