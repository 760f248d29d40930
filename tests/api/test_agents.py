"""/api/v1/agents through the real Serve app: the shipped agents, reads, and admin changes."""

from __future__ import annotations

import uuid

import httpx


def new_agent(**values) -> dict:
    name = f"t-{uuid.uuid4().hex[:8]}"
    return {"name": name, "description": "tells the time", "system_prompt": "Call the time tool.", **values}


def test_the_list_shows_the_shipped_agents(api):
    body = api.get("/api/v1/agents", params={"source": "file"}).json()
    names = {a["name"] for a in body["items"]}
    assert {"assistant", "files-researcher", "repo-inspector"} <= names
    assert body["total"] == len(body["items"]) and all(a["source"] == "file" for a in body["items"])


def test_the_list_filters_by_a_part_of_the_name(api):
    body = api.get("/api/v1/agents", params={"q": "RESEARCH"}).json()
    assert [a["name"] for a in body["items"]] == ["documents-researcher", "files-researcher"] and body["total"] == 2


def test_get_answers_one_agent_with_its_file(api):
    r = api.get("/api/v1/agents/assistant")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tools"] == ["time/*"] and body["model"] is None and body["source"] == "file"
    assert body["path"].endswith("cluster/agents/assistant.md") and body["system_prompt"]


def test_get_of_an_unknown_agent_is_a_json_404(api):
    r = api.get("/api/v1/agents/no-such-agent")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found" and "no-such-agent" in r.json()["error"]["message"]


def test_a_viewer_can_read_agents(serve_app, new_user_headers):
    r = httpx.get(f"{serve_app}/api/v1/agents/assistant", headers=new_user_headers("viewer"), timeout=30)
    assert r.status_code == 200, r.text


def test_a_user_cannot_create_an_agent(api):
    r = api.post("/api/v1/agents", json=new_agent())
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_an_admin_creates_replaces_and_deletes_an_agent(admin_api, api):
    agent = new_agent(tools=["time/get_current_time"], sampling={"temperature": 0.2})
    name = agent["name"]
    r = admin_api.post("/api/v1/agents", json=agent)
    assert r.status_code == 201, r.text
    assert r.json()["source"] == "api" and r.json()["path"] is None and r.json()["sampling"]["temperature"] == 0.2
    assert api.get(f"/api/v1/agents/{name}").json()["tools"] == ["time/get_current_time"]

    r = admin_api.put(f"/api/v1/agents/{name}", json={**agent, "description": "changed", "tools": ["time/*"]})
    assert r.status_code == 200, r.text
    assert api.get(f"/api/v1/agents/{name}").json()["description"] == "changed"

    assert admin_api.delete(f"/api/v1/agents/{name}").status_code == 204
    assert api.get(f"/api/v1/agents/{name}").status_code == 404
    actions = [
        e["action"] for e in admin_api.get("/api/v1/audit", params={"limit": 50}).json()["items"] if e["target"] == name
    ]
    assert {"agent.create", "agent.replace", "agent.delete"} <= set(actions)


def test_creating_an_agent_of_a_taken_name_is_a_409(admin_api):
    r = admin_api.post("/api/v1/agents", json={**new_agent(), "name": "assistant"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "agent_exists"


def test_a_claude_tool_name_is_a_422_with_a_message(admin_api):
    r = admin_api.post("/api/v1/agents", json=new_agent(tools=["Read", "time/*"]))
    assert r.status_code == 422 and "Read" in r.json()["error"]["message"]


def test_a_tool_of_an_unknown_server_is_a_422_naming_it(admin_api):
    r = admin_api.post("/api/v1/agents", json=new_agent(tools=["shell/run"]))
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_tools" and "shell/run" in r.json()["error"]["message"]


def test_a_model_that_is_not_served_is_a_422(admin_api):
    r = admin_api.post("/api/v1/agents", json=new_agent(model="sonnet"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_model"


def test_put_with_another_name_than_the_path_is_a_422(admin_api):
    agent = new_agent()
    assert admin_api.post("/api/v1/agents", json=agent).status_code == 201
    r = admin_api.put(f"/api/v1/agents/{agent['name']}", json={**agent, "name": "renamed"})
    assert r.status_code == 422 and "renamed" in r.json()["error"]["message"]


def test_put_of_a_file_agent_is_a_409_naming_the_file(admin_api):
    agent = admin_api.get("/api/v1/agents/assistant").json()
    definition = {k: agent[k] for k in ("name", "description", "system_prompt", "model", "tools", "max_steps")}
    r = admin_api.put("/api/v1/agents/assistant", json={**definition, "description": "changed"})
    assert r.status_code == 409 and "assistant.md; edit the file" in r.json()["error"]["message"]


def test_delete_of_a_file_agent_is_a_409(admin_api):
    assert admin_api.delete("/api/v1/agents/repo-inspector").status_code == 409
