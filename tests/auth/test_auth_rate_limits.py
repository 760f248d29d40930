"""Rate limits per principal in the real Redis, the in-memory fallback, login attempt limits."""

from __future__ import annotations

import asyncio
import uuid

from tests.auth.helpers import PASSWORD, bearer, build_app, login, make_settings
from tests.helpers import client_for, free_port


def limited_settings(database_url, **overrides):
    return make_settings(
        database_url, rate_limit_requests_per_minute={"admin": 1000, "user": 3, "viewer": 3}, **overrides
    )


async def test_the_request_after_the_limit_gets_429_with_retry_after_and_ratelimit_headers(
    database_url, pool, redis_client, new_user
):
    async with build_app(limited_settings(database_url)) as app, client_for(app) as client:
        headers = bearer((await login(client, (await new_user("user")).username))["access_token"])
        answers = [await client.get("/test/things", headers=headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.headers["retry-after"] == "30"  # the test clock sits 30 s into the minute
    assert refused.headers["x-ratelimit-limit"] == "3" and refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["x-ratelimit-reset"] == "30"


async def test_allowed_responses_carry_the_remaining_allowance(database_url, pool, redis_client, new_user):
    async with build_app(limited_settings(database_url)) as app, client_for(app) as client:
        headers = bearer((await login(client, (await new_user("user")).username))["access_token"])
        first = await client.get("/test/things", headers=headers)
    assert first.headers["x-ratelimit-limit"] == "3" and first.headers["x-ratelimit-remaining"] == "2"


async def test_a_second_user_is_unaffected_by_the_first_users_limit(database_url, pool, redis_client, new_user):
    async with build_app(limited_settings(database_url)) as app, client_for(app) as client:
        alice = bearer((await login(client, (await new_user("user")).username))["access_token"])
        bob = bearer((await login(client, (await new_user("user")).username))["access_token"])
        for _ in range(4):
            await client.get("/test/things", headers=alice)
        assert (await client.get("/test/things", headers=alice)).status_code == 429
        assert (await client.get("/test/things", headers=bob)).status_code == 200


async def test_limits_are_per_role(database_url, pool, redis_client, new_user):
    async with build_app(limited_settings(database_url)) as app, client_for(app) as client:
        admin = bearer((await login(client, (await new_user("admin")).username))["access_token"])
        answers = [await client.get("/test/things", headers=admin) for _ in range(5)]
    assert {a.status_code for a in answers} == {200}


async def test_the_count_is_shared_between_replicas_through_redis(database_url, pool, redis_client, new_user):
    settings = limited_settings(database_url)
    shared = uuid.uuid4().hex[:8]  # same Redis namespace, separate per-replica memory
    async with (
        build_app(settings, namespace=shared) as replica_a,
        build_app(settings, namespace=shared) as replica_b,
        client_for(replica_a) as a,
        client_for(replica_b) as b,
    ):
        headers = bearer((await login(a, (await new_user("user")).username))["access_token"])
        codes = [(await client.get("/test/things", headers=headers)).status_code for client in (a, b, a, b)]
    assert codes == [200, 200, 200, 429]


async def test_a_per_key_limit_narrows_the_role_limit(client, auth_headers):
    created = (
        await client.post(
            "/api/v1/auth/keys", headers=await auth_headers("user"), json={"name": "slow", "requests_per_minute": 2}
        )
    ).json()
    codes = [(await client.get("/test/things", headers=bearer(created["key"]))).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


async def test_token_budget_spent_gives_429_on_the_next_llm_call(database_url, pool, redis_client, new_user):
    settings = make_settings(database_url, rate_limit_tokens_per_minute={"admin": 10**6, "user": 20, "viewer": 20})
    async with build_app(settings) as app:
        body = {"model": "test", "messages": [{"role": "user", "content": "hi"}]}
        async with client_for(app) as client:
            headers = bearer((await login(client, (await new_user("user")).username))["access_token"])
            codes = [(await client.post("/test/completions", headers=headers, json=body)) for _ in range(3)]
        assert [c.status_code for c in codes] == [200, 200, 429]  # 12 tokens per call: 0 -> 12 -> 24 >= 20
        refused = codes[-1]
        assert refused.json()["error"]["code"] == "token_rate_limited" and refused.headers["retry-after"]
        assert refused.headers["x-ratelimit-limit-tokens"] == "20"


async def test_limits_fall_back_to_memory_when_redis_is_unreachable(database_url, pool, new_user, caplog):
    settings = limited_settings(database_url, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_s=0.2)
    async with build_app(settings) as app, client_for(app) as client:
        headers = bearer((await login(client, (await new_user("user")).username))["access_token"])
        answers = [await client.get("/test/things", headers=headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]  # neither open nor closed: still counted
    assert answers[-1].headers["retry-after"]
    assert "counting in this replica's memory" in caplog.text


async def test_login_attempts_are_limited_per_name_and_address(database_url, pool, redis_client, new_user):
    async with build_app(make_settings(database_url, login_attempts_per_minute=3)) as app:
        user = await new_user("user")
        wrong = {"username": user.username, "password": "wrong password"}
        async with client_for(app, client_ip="10.0.0.1") as client:
            codes = [(await client.post("/api/v1/auth/login", json=wrong)).status_code for _ in range(4)]
            right = await client.post("/api/v1/auth/login", json={"username": user.username, "password": PASSWORD})
        assert codes == [401, 401, 401, 429]
        assert right.status_code == 429 and right.json()["error"]["code"] == "too_many_login_attempts"
        assert right.headers["retry-after"]


async def test_a_stranger_guessing_a_name_does_not_lock_its_owner_out(database_url, pool, redis_client, new_user):
    async with build_app(make_settings(database_url, login_attempts_per_minute=3)) as app:
        user = await new_user("user")
        async with client_for(app, client_ip="10.6.6.6") as attacker:
            for _ in range(6):
                await attacker.post("/api/v1/auth/login", json={"username": user.username, "password": "guess " * 2})
        async with client_for(app, client_ip="10.0.0.2") as owner:
            response = await owner.post("/api/v1/auth/login", json={"username": user.username, "password": PASSWORD})
        assert response.status_code == 200


async def test_login_attempts_are_limited_per_client_address(database_url, pool, redis_client):
    async with build_app(make_settings(database_url, login_attempts_per_minute=3)) as app:
        async with client_for(app, client_ip="10.9.9.9") as client:
            codes = [
                (
                    await client.post(
                        "/api/v1/auth/login", json={"username": f"nobody{uuid.uuid4().hex[:6]}", "password": "x" * 10}
                    )
                ).status_code
                for _ in range(16)
            ]
        assert codes == [401] * 15 + [429]  # many names from one address: 5 x the per-name limit


async def test_failed_authentications_are_limited_per_address(database_url, new_user):
    user = await new_user("user")
    async with build_app(make_settings(database_url, auth_failures_per_minute=3)) as app:
        async with client_for(app, client_ip="10.4.4.4") as guesser:
            good = bearer((await login(guesser, user.username))["access_token"])
            codes = [
                (await guesser.get("/test/things", headers=bearer("sk-" + "B" * 43))).status_code for _ in range(4)
            ]
            with_a_good_token = await guesser.get("/test/things", headers=good)
        async with client_for(app, client_ip="10.4.4.5") as elsewhere:
            from_elsewhere = await elsewhere.get("/test/things", headers=good)
    assert codes == [401, 401, 401, 429]
    assert with_a_good_token.status_code == 429 and from_elsewhere.status_code == 200


async def test_parallel_requests_cannot_all_spend_one_token_budget(database_url, new_user):
    settings = make_settings(database_url, rate_limit_tokens_per_minute={"admin": 10**6, "user": 100, "viewer": 100})
    async with build_app(settings) as app, client_for(app) as client:
        headers = bearer((await login(client, (await new_user("user")).username))["access_token"])
        body = {"max_tokens": 60, "hold_s": 0.3}
        answers = await asyncio.gather(*(client.post("/test/generate", headers=headers, json=body) for _ in range(2)))
    assert sorted(a.status_code for a in answers) == [200, 429]  # 2 x 62 reserved > 100, though each used 2
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "token_rate_limited"


async def test_a_reservation_gives_back_what_was_not_used(database_url, new_user):
    settings = make_settings(database_url, rate_limit_tokens_per_minute={"admin": 10**6, "user": 100, "viewer": 100})
    async with build_app(settings) as app, client_for(app) as client:
        headers = bearer((await login(client, (await new_user("user")).username))["access_token"])
        codes = [
            (await client.post("/test/generate", headers=headers, json={"max_tokens": 60})).status_code
            for _ in range(5)
        ]
    assert codes == [200] * 5  # each reserves 62 and pays 2


async def test_concurrent_model_requests_are_capped_per_user(database_url, new_user):
    async with build_app(make_settings(database_url, max_concurrent_model_requests=2)) as app, client_for(app) as c:
        headers = bearer((await login(c, (await new_user("user")).username))["access_token"])
        answers = await asyncio.gather(
            *(c.post("/test/generate", headers=headers, json={"hold_s": 0.5}) for _ in range(3))
        )
        after = await c.post("/test/generate", headers=headers, json={})
    assert sorted(a.status_code for a in answers) == [200, 200, 429]
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "too_many_concurrent_requests" and refused.headers["retry-after"]
    assert after.status_code == 200  # slots come back when requests finish


async def test_the_client_address_comes_from_a_trusted_proxy_only(database_url, pool, new_user):
    user = await new_user("user")
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    wrong = {"username": user.username, "password": "wrong password"}
    for trusted, expected in ((["127.0.0.1"], "203.0.113.7"), ([], "127.0.0.1")):
        async with build_app(make_settings(database_url, trusted_proxies=trusted)) as app, client_for(app) as client:
            await client.post("/api/v1/auth/login", json=wrong, headers=forwarded)
        row = await pool.fetchrow(
            "SELECT client_ip FROM audit_log WHERE action = 'auth.login_failed' AND target = $1 "
            "ORDER BY id DESC LIMIT 1",
            str(user.id),
        )
        assert row["client_ip"] == expected


async def test_a_refused_login_burst_is_audited_once(database_url, pool, redis_client, new_user):
    async with build_app(make_settings(database_url, login_attempts_per_minute=1)) as app:
        user = await new_user("user")
        before = await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.login_rate_limited'")
        async with client_for(app, client_ip="10.7.7.7") as client:
            for _ in range(4):
                await client.post("/api/v1/auth/login", json={"username": user.username, "password": "wrong password"})
        assert (
            await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.login_rate_limited'") == before + 1
        )


async def test_a_route_with_several_auth_dependencies_counts_one_request(database_url, pool, redis_client, new_user):
    async with build_app(make_settings(database_url, rate_limit_requests_per_minute={"user": 2})) as app:
        body = {"model": "test", "messages": [{"role": "user", "content": "hi"}]}
        async with client_for(app) as client:
            headers = bearer((await login(client, (await new_user("user")).username))["access_token"])
            codes = [(await client.post("/test/completions", headers=headers, json=body)).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
