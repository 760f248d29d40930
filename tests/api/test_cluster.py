"""Cluster status through the running Serve app: Ray's own view of nodes, replicas and actors."""

import time

import httpx


def _status(client: httpx.Client) -> dict:
    r = client.get("/api/v1/cluster/status")
    assert r.status_code == 200, r.text
    return r.json()


def test_cluster_status_has_one_alive_node_with_cpus(api):
    alive = [n for n in _status(api)["nodes"] if n["alive"]]
    assert len(alive) == 1 and alive[0]["resources_total"]["CPU"] > 0


def test_cluster_status_lists_the_deployments_with_running_replicas(api):
    apps = {a["name"]: a for a in _status(api)["applications"]}
    deployments = {d["name"]: d for d in apps["sutazai"]["deployments"]}
    for name in ("ingress", "llm-gemma3-270m"):
        assert deployments[name]["running_replicas"] >= 1 and deployments[name]["target_replicas"] >= 1


def test_cluster_status_places_the_mcp_actors_on_a_node(api):
    deadline = time.monotonic() + 30  # the actors are made in the background with the app
    while True:
        body = _status(api)
        actors = {a["name"]: a for a in body["actors"]}
        if "mcp-time" in actors or time.monotonic() > deadline:
            break
        time.sleep(1)
    node_ids = {n["node_id"] for n in body["nodes"]}
    assert body["actors_error"] is None
    assert actors["mcp-time"]["node_id"] in node_ids and actors["mcp-time"]["state"] == "ALIVE"


def test_a_viewer_may_read_cluster_status(serve_app, new_user_headers):
    r = httpx.get(f"{serve_app}/api/v1/cluster/status", headers=new_user_headers("viewer"), timeout=60)
    assert r.status_code == 200 and r.json()["on_ray"] is True


def test_cluster_status_needs_credentials(serve_app):
    assert httpx.get(f"{serve_app}/api/v1/cluster/status", timeout=60).status_code == 401


def test_detailed_health_links_to_cluster_status(api):
    assert api.get("/api/v1/health/detailed").json()["cluster"] == "/api/v1/cluster/status"
