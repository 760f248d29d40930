"""Liveness, status, the model list, and the error shape of unknown routes."""


def test_liveness_answers_ok(api):
    r = api.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_root_names_the_models(api):
    body = api.get("/").json()
    assert body["name"] == "SutazAI" and "gemma3-270m" in body["models"]


def test_models_lists_the_cpu_model_as_default(api):
    models = {m["name"]: m for m in api.get("/api/v1/models").json()["items"]}
    assert models["gemma3-270m"]["engine"] == "cpu" and models["gemma3-270m"]["default"] is True


def test_status_reports_running_deployments(api):
    body = api.get("/api/v1/status").json()
    model = body["deployments"]["llm-gemma3-270m"]
    # UPSCALING / DOWNSCALING: healthy, and the autoscaler is acting on the load earlier tests left
    assert model["status"] in ("HEALTHY", "UPSCALING", "DOWNSCALING"), model
    assert model["replicas"]["RUNNING"] >= 1
    assert body["deployments"]["ingress"]["replicas"]["RUNNING"] >= 1


def test_detailed_health_is_ok_with_every_dependency_up(api):
    r = api.get("/api/v1/health/detailed")
    body = r.json()
    assert r.status_code == 200, body
    for name in ("postgres", "redis", "model:gemma3-270m"):
        assert body["components"][name]["status"] == "ok"
        assert body["components"][name]["latency_ms"] >= 0


def test_unknown_route_is_a_json_404(api):
    r = api.get("/api/v1/nope", headers={"X-Request-ID": "req-123"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert r.json()["error"]["request_id"] == "req-123"
    assert r.headers["x-request-id"] == "req-123"


def test_every_response_carries_a_request_id(api):
    assert len(api.get("/health").headers["x-request-id"]) >= 16
