"""Batch jobs through HTTP: submitted as real Ray jobs to the session cluster's job server,
running the batch entrypoint against the session app's CPU model."""

from __future__ import annotations

import json
import time

import httpx

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def submitted(r: httpx.Response) -> dict:
    """The 202's job. (The session cluster's job agent binds Ray's default port 52365: another
    Ray on the machine holding it makes every submission a 503 "No available agent".)"""
    assert r.status_code == 202, r.text
    return r.json()


def wait_for(api: httpx.Client, job_id: str, statuses: tuple[str, ...], timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        r = api.get(f"/api/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in statuses:
            return job
        assert job["status"] not in TERMINAL, job
        assert time.monotonic() < deadline, job
        time.sleep(1)


def test_a_batch_job_runs_to_the_end_and_only_its_owner_sees_it(api, admin_api, serve_app, new_user_headers):
    prompts = ["The capital of France is", "Once upon a time", "2+2="]
    r = api.post("/api/v1/jobs/batch", json={"prompts": prompts, "max_tokens": 4, "temperature": 0})
    job = submitted(r)
    assert r.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert job["progress"] == {"done": 0, "total": 3, "fraction": 0.0}

    done = wait_for(api, job["id"], ("SUCCEEDED",))
    assert done["progress"] == {"done": 3, "total": 3, "fraction": 1.0}
    assert "batch done" in done["log_tail"]

    results = api.get(done["results_url"])
    assert results.status_code == 200
    records = [json.loads(line) for line in results.text.splitlines()]
    assert [r["id"] for r in records] == ["0", "1", "2"]
    assert all(r["error"] is None and 0 < r["usage"]["completion_tokens"] <= 4 for r in records)

    assert job["id"] in [j["id"] for j in api.get("/api/v1/jobs").json()["items"]]
    assert job["id"] in [j["id"] for j in admin_api.get("/api/v1/jobs", params={"limit": 500}).json()["items"]]
    with httpx.Client(base_url=serve_app, headers=new_user_headers("user"), timeout=30) as other:
        assert job["id"] not in [j["id"] for j in other.get("/api/v1/jobs").json()["items"]]
        for path in ("", "/results"):
            assert other.get(f"/api/v1/jobs/{job['id']}{path}").status_code == 404
        assert other.post(f"/api/v1/jobs/{job['id']}/stop").status_code == 404


def test_an_uploaded_jsonl_job_can_be_stopped(api):
    lines = "".join(json.dumps({"id": f"q{i}", "prompt": f"Story {i}:"}) + "\n" for i in range(40))
    r = api.post(
        "/api/v1/jobs/batch",
        files={"file": ("prompts.jsonl", lines.encode(), "application/jsonl")},
        data={"max_tokens": "48"},
    )
    job = submitted(r)
    assert job["progress"]["total"] == 40
    wait_for(api, job["id"], ("RUNNING",))
    r = api.post(f"/api/v1/jobs/{job['id']}/stop")
    assert r.status_code == 200, r.text
    stopped = wait_for(api, job["id"], ("STOPPED",), timeout_s=60)
    assert stopped["progress"]["done"] < 40


def test_bad_submissions_are_refused(api):
    assert api.post("/api/v1/jobs/batch", json={"prompts": []}).status_code == 422
    assert api.post("/api/v1/jobs/batch", json={"prompts": ["x"], "model": "no-such-model"}).status_code == 404
    empty = api.post("/api/v1/jobs/batch", files={"file": ("p.jsonl", b"\n\n", "application/jsonl")})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_batch"
    assert api.get("/api/v1/jobs/batch-nope").status_code == 404
