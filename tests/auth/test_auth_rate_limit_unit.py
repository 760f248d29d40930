"""The limiter's counting rules, on the in-memory backend; its scripted calls on Redis as well."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from sutazai.auth.rate_limit import REQUESTS, Limit, RateLimiter
from tests.helpers import REDIS_URL


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def redis_limiter(name: str) -> AsyncIterator[tuple[RateLimiter, str]]:
    """A limiter on the test Redis under a fresh key prefix (its keys deleted afterwards), for the
    calls that are a script or a pipeline there: (limiter, prefix)."""
    client = aioredis.from_url(REDIS_URL)
    prefix = f"{name}-{uuid.uuid4().hex[:8]}:"
    try:
        yield RateLimiter(client, prefix=prefix, clock=Clock(6000)), prefix
    finally:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        await client.aclose()


async def test_the_request_after_the_limit_is_refused_with_retry_after():
    clock = Clock(6000 + 15)  # 15 s into a window
    limiter = RateLimiter(None, clock=clock)
    decisions = [await limiter.hit(REQUESTS, [Limit("user:a", 3)]) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    refused = decisions[-1]
    assert refused.backend == "memory" and refused.reset_s == 45
    assert refused.headers()["Retry-After"] == "45"


async def test_a_new_window_starts_from_zero():
    clock = Clock(6000)
    limiter = RateLimiter(None, clock=clock)
    for _ in range(2):
        await limiter.hit(REQUESTS, [Limit("user:a", 2)])
    assert not (await limiter.hit(REQUESTS, [Limit("user:a", 2)])).allowed
    clock.now += 60
    assert (await limiter.hit(REQUESTS, [Limit("user:a", 2)])).allowed


async def test_the_most_constrained_bucket_decides():
    limiter = RateLimiter(None, clock=Clock(6000))
    limits = [Limit("user:a", 100), Limit("key:k", 1)]
    assert (await limiter.hit(REQUESTS, limits)).allowed
    refused = await limiter.hit(REQUESTS, limits)
    assert not refused.allowed and refused.limit == 1


async def test_check_counts_nothing_and_add_spends():
    limiter = RateLimiter(None, clock=Clock(6000))
    limits = [Limit("user:a", 10)]
    assert (await limiter.check("tok", limits)).remaining == 10
    await limiter.add("tok", limits, 10)
    assert not (await limiter.check("tok", limits)).allowed


async def test_password_hashing_runs_at_most_two_at_a_time(monkeypatch):
    from sutazai.auth import passwords

    running = peak = 0
    lock = threading.Lock()

    def slow_hash(password: str) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return "hash"

    monkeypatch.setattr(passwords, "hash_password", slow_hash)
    await asyncio.gather(*(passwords.hash_password_async("a password") for _ in range(6)))
    assert peak == passwords.MAX_CONCURRENT_HASHES == 2


async def test_a_concurrency_slot_is_refused_past_the_cap_and_comes_back():
    limiter = RateLimiter(None, clock=Clock(6000))
    assert [await limiter.acquire("user:a", 2) for _ in range(3)] == [True, True, False]
    await limiter.release("user:a")
    assert await limiter.acquire("user:a", 2)


async def test_an_hourly_window_outlasts_the_minute():
    clock = Clock(7200 + 30)
    limiter = RateLimiter(None, clock=clock)
    limits = [Limit("pair:a", 10), Limit("pair:a", 2, window_s=3600)]
    assert [(await limiter.hit(REQUESTS, limits)).allowed for _ in range(3)] == [True, True, False]
    clock.now += 60  # a new minute, the same hour
    refused = await limiter.hit(REQUESTS, limits)
    assert not refused.allowed and refused.reset_s > 60


async def test_gate_checks_then_counts_in_one_call_and_counts_nothing_when_refused():
    from sutazai.auth.rate_limit import AUTH_FAILURES

    async def run(limiter: RateLimiter) -> None:
        failures, requests = [Limit("ip:x", 2)], [Limit("user:a", 5)]
        check, decision = await limiter.gate(AUTH_FAILURES, failures, REQUESTS, requests)
        assert check.allowed and check.remaining == 2 and decision.allowed and decision.remaining == 4
        await limiter.hit(AUTH_FAILURES, failures, 2)
        check, decision = await limiter.gate(AUTH_FAILURES, failures, REQUESTS, requests)
        assert not check.allowed and check.headers()["Retry-After"]
        assert (await limiter.check(REQUESTS, requests)).remaining == 4  # the refused request was not counted
        await limiter.hit(AUTH_FAILURES, failures, -2)
        for _ in range(4):
            check, decision = await limiter.gate(AUTH_FAILURES, failures, REQUESTS, requests)
        assert decision.allowed and decision.remaining == 0
        _, decision = await limiter.gate(AUTH_FAILURES, failures, REQUESTS, requests)
        assert not decision.allowed and decision.used == 6

    await run(RateLimiter(None, clock=Clock(6000)))
    async with redis_limiter("gatetest") as (limiter, prefix):
        await run(limiter)
        assert limiter.memory.get([f"{prefix}req:user:a:60:100"], 6000) == [0]  # all of it in Redis


async def test_reserve_takes_a_slot_and_tokens_in_one_call_all_or_nothing():
    from sutazai.auth.rate_limit import TOKENS

    async def run(limiter: RateLimiter) -> None:
        budget = [Limit("user:a", 100)]
        first = await limiter.reserve("user:a", 2, TOKENS, budget, 60)
        assert first is not None and first.allowed and first.remaining == 40
        over = await limiter.reserve("user:a", 2, TOKENS, budget, 60)  # 120 > 100: refused, nothing kept
        assert over is not None and not over.allowed and over.headers()["Retry-After"]
        assert (await limiter.check(TOKENS, budget)).remaining == 40
        second = await limiter.reserve("user:a", 2, TOKENS, budget, 10)
        assert second is not None and second.allowed  # the refused one gave its slot back
        assert await limiter.reserve("user:a", 2, TOKENS, budget, 1) is None  # both slots in use
        assert (await limiter.check(TOKENS, budget)).remaining == 30  # the slotless one took no tokens
        await limiter.settle("user:a", TOKENS, budget, 5 - 60)  # the first used 5 of its 60
        assert (await limiter.check(TOKENS, budget)).remaining == 85
        third = await limiter.reserve("user:a", 2, TOKENS, budget, 1)
        assert third is not None and third.allowed  # its slot came back

    await run(RateLimiter(None, clock=Clock(6000)))
    async with redis_limiter("reservetest") as (limiter, prefix):
        await run(limiter)
        assert limiter.memory.get([f"{prefix}conc:user:a"], 6000) == [0]  # all of it in Redis
        assert limiter.redis is not None and int(await limiter.redis.get(f"{prefix}conc:user:a")) == 2
