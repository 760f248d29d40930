"""Rate-limit counting: fixed one-minute windows shared by every replica.

Counters live in Redis (`INCRBY` + `EXPIRE`, keys `<prefix><kind>:<bucket>:<window>`).
Which buckets apply to a caller is not decided here: a principal names its own
limits (`Principal.request_limits`), and login names its buckets (`login_limits`).

If Redis fails, the limiter counts in this process's memory instead: each
replica then enforces the limit on its own share of traffic, which is far better
than letting everything through or refusing everything. Redis is retried after
a few seconds (so a dead Redis does not add its timeout to every request).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sutazai.errors import RateLimited

logger = logging.getLogger("sutazai.auth.rate_limit")

WINDOW_S = 60
REQUESTS = "req"
TOKENS = "tok"
LOGIN = "login"
RETRY_REDIS_AFTER_S = 5.0  # after a Redis failure, count in memory this long before trying it again


@dataclass(frozen=True)
class Limit:
    bucket: str  # e.g. "user:<uuid>", "key:<uuid>", "ip:1.2.3.4"
    limit: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the current window ends
    backend: str  # "redis" or "memory"
    used: int = 0  # count in the deciding bucket, this one included

    def headers(self, suffix: str = "") -> dict[str, str]:
        """X-RateLimit-* headers (Reset is in seconds from now), plus Retry-After when refused."""
        headers = {
            f"X-RateLimit-Limit{suffix}": str(self.limit),
            f"X-RateLimit-Remaining{suffix}": str(self.remaining),
            f"X-RateLimit-Reset{suffix}": str(self.reset_s),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_s)
        return headers


UNLIMITED = Decision(True, 0, 0, 0, "none", 0)


def rate_limited(decision: Decision, message: str, *, code: str = "rate_limited", suffix: str = "") -> RateLimited:
    return RateLimited(message, decision.headers(suffix), code=code)


def login_limits(per_minute: int, username: str, client_ip: str | None) -> list[Limit]:
    """A login attempt counts against the username and the client address."""
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    limits = [Limit(f"name:{name}", per_minute)]
    if client_ip:
        limits.append(Limit(f"ip:{client_ip}", per_minute))
    return limits


class MemoryCounters:
    """Fixed-window counters in this process only: the fallback when Redis is unreachable."""

    def __init__(self) -> None:
        self._window: int | None = None
        self._counts: dict[str, int] = {}

    def _roll(self, window: int) -> None:
        if window != self._window:  # a new minute: forget the old one
            self._window = window
            self._counts = {}

    def incr(self, keys: list[str], amount: int, window: int) -> list[int]:
        self._roll(window)
        out = []
        for key in keys:
            self._counts[key] = self._counts.get(key, 0) + amount
            out.append(self._counts[key])
        return out

    def get(self, keys: list[str], window: int) -> list[int]:
        self._roll(window)
        return [self._counts.get(key, 0) for key in keys]


class RateLimiter:
    def __init__(
        self,
        redis: aioredis.Redis | None,
        *,
        prefix: str = "sutazai:rl:",
        timeout_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.memory = MemoryCounters()
        self._clock = clock
        self._redis_down_until = 0.0

    # -- the three operations -------------------------------------------------

    async def hit(self, kind: str, limits: list[Limit], amount: int = 1) -> Decision:
        """Count `amount` against every bucket; refused when any bucket is now over its limit."""
        if not limits:
            return UNLIMITED
        window, reset_s = self._window()
        keys = [self._key(kind, lim.bucket, window) for lim in limits]
        counts, backend = await self._run(
            self._redis_incr(keys, amount), lambda: self.memory.incr(keys, amount, window)
        )
        return _decide(limits, counts, reset_s, backend, inclusive=True)

    async def check(self, kind: str, limits: list[Limit]) -> Decision:
        """Is anything left in every bucket? (Counts nothing: for tokens, known only afterwards.)"""
        if not limits:
            return UNLIMITED
        window, reset_s = self._window()
        keys = [self._key(kind, lim.bucket, window) for lim in limits]
        counts, backend = await self._run(self._redis_get(keys), lambda: self.memory.get(keys, window))
        return _decide(limits, counts, reset_s, backend, inclusive=False)

    async def add(self, kind: str, limits: list[Limit], amount: int) -> None:
        """Count usage measured after the fact (LLM tokens)."""
        if limits and amount > 0:
            await self.hit(kind, limits, amount)

    # -- plumbing --------------------------------------------------------------

    def _window(self) -> tuple[int, int]:
        now = self._clock()
        window = int(now // WINDOW_S)
        reset_s = max(1, math.ceil((window + 1) * WINDOW_S - now))
        return window, reset_s

    def _key(self, kind: str, bucket: str, window: int) -> str:
        return f"{self.prefix}{kind}:{bucket}:{window}"

    async def _redis_incr(self, keys: list[str], amount: int) -> list[int]:
        assert self.redis is not None
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.incrby(key, amount)
            pipe.expire(key, 2 * WINDOW_S)
        results = await pipe.execute()
        return [int(v) for v in results[0::2]]

    async def _redis_get(self, keys: list[str]) -> list[int]:
        assert self.redis is not None
        values = await self.redis.mget(keys)
        return [int(v) if v is not None else 0 for v in values]

    async def _run(
        self, redis_op: Coroutine[Any, Any, list[int]], memory_op: Callable[[], list[int]]
    ) -> tuple[list[int], str]:
        if self.redis is None or time.monotonic() < self._redis_down_until:
            redis_op.close()
            return memory_op(), "memory"
        try:
            return await asyncio.wait_for(redis_op, self.timeout_s), "redis"
        except (TimeoutError, RedisError, OSError) as exc:
            self._redis_down_until = time.monotonic() + RETRY_REDIS_AFTER_S
            logger.warning(
                "rate limiter: Redis unavailable (%s); counting in this replica's memory for %.0fs",
                type(exc).__name__,
                RETRY_REDIS_AFTER_S,
            )
            return memory_op(), "memory"


def _decide(limits: list[Limit], counts: list[int], reset_s: int, backend: str, *, inclusive: bool) -> Decision:
    """The most constrained bucket decides (and is the one reported in headers)."""
    worst: Decision | None = None
    for lim, count in zip(limits, counts, strict=True):
        allowed = count <= lim.limit if inclusive else count < lim.limit
        decision = Decision(allowed, lim.limit, max(0, lim.limit - count), reset_s, backend, count)
        if (
            worst is None
            or (worst.allowed and not decision.allowed)
            or (worst.allowed == decision.allowed and decision.remaining < worst.remaining)
        ):
            worst = decision
    assert worst is not None  # limits is never empty here
    return worst
