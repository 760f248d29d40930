"""Authentication on the whole app: every route is protected except the public
ones, admin routes refuse users, write routes refuse viewers. The route walk runs
on an in-process app built by the same factory as the ingress (real Postgres,
Redis and model deployment); the rest goes through Serve over HTTP."""

import httpx
import pytest

from tests.conftest import app_in_process
from tests.route_protection import check_route_protection

PUBLIC = {("GET", "/health"), ("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/refresh")}


@pytest.fixture(scope="module")
async def in_process_app(serve_app, replica_settings):
    async with app_in_process(replica_settings()) as app:
        yield app


async def test_every_route_but_the_public_ones_needs_credentials_and_the_right_role(
    in_process_app, user_headers, new_user_headers
):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=in_process_app), base_url="http://app") as client:
        counts = await check_route_protection(
            in_process_app, client, public=PUBLIC, user_headers=user_headers, viewer_headers=new_user_headers("viewer")
        )
    assert counts["protected"] >= 25 and counts["admin"] >= 5 and counts["public"] == len(PUBLIC)


def test_liveness_needs_no_credentials(serve_app):
    assert httpx.get(f"{serve_app}/health").status_code == 200


def test_chat_without_credentials_is_401_with_www_authenticate(serve_app):
    r = httpx.post(f"{serve_app}/api/v1/chat", json={"message": "hi"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["error"]["code"] == "unauthorized"
