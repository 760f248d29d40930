"""Cluster status through the running Serve app: Ray's own view of nodes, replicas and actors."""

import time

import httpx

from sutazai.catalog import ModelCatalog
from sutazai.settings import PROJECT_ROOT


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


def test_cluster_status_shows_the_model_deployments_autoscaling(api):
    apps = {a["name"]: a for a in _status(api)["applications"]}
    model = {d["name"]: d for d in apps["sutazai"]["deployments"]}["llm-gemma3-270m"]
    scaling = model["autoscaling"]
    declared = ModelCatalog.load(PROJECT_ROOT / "models").specs["gemma3-270m"].autoscaling
    assert (scaling["min_replicas"], scaling["max_replicas"]) == (declared.min_replicas, declared.max_replicas)
    assert scaling["target_ongoing_requests"] == declared.target_ongoing_requests
    assert scaling["scaling"] in ("STABLE", "UPSCALING", "DOWNSCALING") and scaling["last_change"]
    assert isinstance(scaling["decisions"], list)


def test_cluster_status_lists_the_agent_runner_actors(api):
    deadline = time.monotonic() + 30
    while True:
        body = _status(api)
        # alive ones: runners killed by the durability tests are listed too, as DEAD
        runners = [a for a in body["actors"] if a["name"].startswith("agent-runner-") and a["state"] == "ALIVE"]
        if runners or time.monotonic() > deadline:
            break
        time.sleep(1)
    node_ids = {n["node_id"] for n in body["nodes"]}
    assert runners and all(r["namespace"] == "sutazai" and r["node_id"] in node_ids for r in runners)
    assert {r["class_name"] for r in runners} == {"AgentRunner"}


def test_autoscaling_direction_comes_from_target_against_running():
    from sutazai.api.cluster import _autoscaling

    found = {
        "target_num_replicas": 2,
        "deployment_config": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 3, "upscale_delay_s": 5}},
    }
    up = _autoscaling(found, "HEALTHY", "AUTOSCALING", running=1)
    assert up is not None and up.scaling == "UPSCALING" and (up.min_replicas, up.max_replicas) == (1, 3)
    assert _autoscaling(found, "HEALTHY", None, running=2).scaling == "STABLE"  # type: ignore[union-attr]
    assert _autoscaling(found, "DOWNSCALING", None, running=2).scaling == "DOWNSCALING"  # type: ignore[union-attr]
    assert _autoscaling({"target_num_replicas": 1, "deployment_config": {}}, "HEALTHY", None, 1) is None
    found["autoscaling_detail"] = {
        "scaling_status": "STABLE",
        "decisions": [{"timestamp_s": 1.0, "reason": "load", "prev_num_replicas": 1, "curr_num_replicas": 2}],
    }
    decided = _autoscaling(found, "HEALTHY", None, running=2)
    assert decided is not None and decided.decisions[0].to_replicas == 2
