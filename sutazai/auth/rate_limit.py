"""Rate-limit counting: fixed windows shared by every replica, and concurrency slots.

Counters live in Redis (`INCRBY` + `EXPIRE`, keys `<prefix><kind>:<bucket>:<window_s>:<n>`),
one round trip per decision: a pipeline for `hit`, and for `gate` (is anything left in
these buckets? then count in those) one Lua script, so an authenticated request costs
a single call to Redis; a model call costs two more, `reserve` (a concurrency slot and
its tokens, one script) and `settle` (the tokens really used and the slot back, one
pipeline). Which buckets apply to a caller is not decided here: a principal names its
own limits (`Principal.request_limits`), and login names its buckets (`login_limits`).

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
AUTH_FAILURES = "authfail"
CONCURRENT = "conc"
RETRY_REDIS_AFTER_S = 5.0  # after a Redis failure, count in memory this long before trying it again
SLOT_TTL_S = 3600  # a concurrency slot whose release was lost (a crashed replica) frees itself


@dataclass(frozen=True)
class Limit:
    bucket: str  # e.g. "user:<uuid>", "key:<uuid>", "ip:1.2.3.4"
    limit: int
    window_s: int = WINDOW_S


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the deciding window ends
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

# KEYS: the n checked keys, then the counted keys. ARGV: n, amount, the checked limits,
# the counted keys' TTLs. Counts nothing when a checked bucket is exhausted.
GATE_SCRIPT = """
local n = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local out = {0}
for i = 1, n do
  local v = tonumber(redis.call('GET', KEYS[i]) or '0')
  out[i + 1] = v
  if v >= tonumber(ARGV[2 + i]) then out[1] = 1 end
end
for i = n + 1, #KEYS do
  if out[1] == 1 then
    out[i + 1] = tonumber(redis.call('GET', KEYS[i]) or '0')
  else
    out[i + 1] = redis.call('INCRBY', KEYS[i], amount)
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2 + i]))
  end
end
return out
"""


# KEYS: the slot key, then the token keys. ARGV: cap, slot TTL, amount, then a limit and a TTL
# per token key. Returns {status, slots, counts...}: 0 reserved, 1 no slot, 2 over a token
# limit (the counts are with this request; nothing stays taken unless status is 0).
RESERVE_SCRIPT = """
local cap = tonumber(ARGV[1])
local amount = tonumber(ARGV[3])
local slots = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
if slots > cap then
  redis.call('DECR', KEYS[1])
  return {1, slots - 1}
end
local out = {0, slots}
for i = 2, #KEYS do
  local v = redis.call('INCRBY', KEYS[i], amount)
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2 * i + 1]))
  out[i + 1] = v
  if v > tonumber(ARGV[2 * i]) then out[1] = 2 end
end
if out[1] == 2 then
  for i = 2, #KEYS do redis.call('DECRBY', KEYS[i], amount) end
  redis.call('DECR', KEYS[1])
end
return out
"""


def rate_limited(decision: Decision, message: str, *, code: str = "rate_limited", suffix: str = "") -> RateLimited:
    return RateLimited(message, decision.headers(suffix), code=code)


def login_limits(per_minute: int, username: str, client_ip: str | None) -> list[Limit]:
    """A login attempt counts against the (username, address) pair, per minute and, as a
    backoff, per hour; and against the address alone (many names from one place).
    Keyed on the pair, a stranger guessing a known name cannot lock its owner out."""
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    where = client_ip or "unknown"
    return [
        Limit(f"pair:{name}:{where}", per_minute),
        Limit(f"pair:{name}:{where}", per_minute * 3, window_s=3600),
        Limit(f"ip:{where}", per_minute * 5),
    ]


class MemoryCounters:
    """Windowed counters in this process only: the fallback when Redis is unreachable."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, float]] = {}  # key -> (count, expires at)

    def incr(self, keys: list[str], amount: int, expires_at: list[float], now: float) -> list[int]:
        self._forget_expired(now)
        out = []
        for key, expiry in zip(keys, expires_at, strict=True):
            count = self._counts.get(key, (0, expiry))[0] + amount
            self._counts[key] = (count, expiry)
            out.append(count)
        return out

    def get(self, keys: list[str], now: float) -> list[int]:
        self._forget_expired(now)
        return [self._counts.get(key, (0, 0.0))[0] for key in keys]

    def _forget_expired(self, now: float) -> None:
        if len(self._counts) > 10_000 or any(expiry <= now for _, expiry in list(self._counts.values())[:64]):
            self._counts = {k: v for k, v in self._counts.items() if v[1] > now}


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
        self._gate_script = redis.register_script(GATE_SCRIPT) if redis is not None else None
        self._reserve_script = redis.register_script(RESERVE_SCRIPT) if redis is not None else None

    # -- windows -----------------------------------------------------------------

    async def hit(self, kind: str, limits: list[Limit], amount: int = 1) -> Decision:
        """Count `amount` against every bucket; refused when any bucket is now over its limit."""
        if not limits:
            return UNLIMITED
        now = self._clock()
        keys, resets = self._keys(kind, limits, now)
        counts, backend = await self._run(
            self._redis_incr(keys, amount, _ttls(limits)),
            lambda: self.memory.incr(keys, amount, [now + r for r in resets], now),
        )
        return _decide(limits, counts, resets, backend, inclusive=True)

    async def check(self, kind: str, limits: list[Limit]) -> Decision:
        """Is anything left in every bucket? (Counts nothing.)"""
        if not limits:
            return UNLIMITED
        now = self._clock()
        keys, resets = self._keys(kind, limits, now)
        counts, backend = await self._run(self._redis_get(keys), lambda: self.memory.get(keys, now))
        return _decide(limits, counts, resets, backend, inclusive=False)

    async def gate(
        self, check_kind: str, checked: list[Limit], kind: str, limits: list[Limit], amount: int = 1
    ) -> tuple[Decision, Decision]:
        """`check(check_kind, checked)` then, only if that allows, `hit(kind, limits, amount)`, in one
        round trip. Returns both decisions; when the first refuses, nothing was counted."""
        now = self._clock()
        check_keys, check_resets = self._keys(check_kind, checked, now)
        keys, resets = self._keys(kind, limits, now)
        n = len(check_keys)
        ttls = _ttls(limits)

        async def redis_op() -> list[int]:
            assert self._gate_script is not None
            args = [n, amount, *(lim.limit for lim in checked), *ttls]
            out = await self._gate_script(keys=[*check_keys, *keys], args=args)
            return [int(v) for v in out]

        def memory_op() -> list[int]:
            seen = self.memory.get(check_keys, now)
            blocked = any(c >= lim.limit for c, lim in zip(seen, checked, strict=True))
            if blocked:
                return [1, *seen, *self.memory.get(keys, now)]
            return [0, *seen, *self.memory.incr(keys, amount, [now + r for r in resets], now)]

        out, backend = await self._run(redis_op(), memory_op)
        blocked, check_counts, counts = bool(out[0]), out[1 : 1 + n], out[1 + n :]
        check = _decide(checked, check_counts, check_resets, backend, inclusive=False) if checked else UNLIMITED
        if not limits:
            return check, UNLIMITED
        return check, _decide(limits, counts, resets, backend, inclusive=not blocked)

    async def add(self, kind: str, limits: list[Limit], amount: int) -> None:
        """Count usage measured after the fact; a negative amount gives back a reservation."""
        if limits and amount:
            await self.hit(kind, limits, amount)

    # -- concurrency slots ----------------------------------------------------------

    async def reserve(self, bucket: str, cap: int, kind: str, limits: list[Limit], amount: int) -> Decision | None:
        """`acquire(bucket, cap)` and `hit(kind, limits, amount)` in one round trip, all or nothing.

        None when all `cap` slots are in use; else the tokens' decision (refused: nothing taken)."""
        now = self._clock()
        slot = self._slot_key(bucket)
        keys, resets = self._keys(kind, limits, now)
        ttls = _ttls(limits)

        async def redis_op() -> list[int]:
            assert self._reserve_script is not None
            args: list[int] = [cap, SLOT_TTL_S, amount]
            for lim, ttl in zip(limits, ttls, strict=True):
                args += [lim.limit, ttl]
            out = await self._reserve_script(keys=[slot, *keys], args=args)
            return [int(v) for v in out]

        def memory_op() -> list[int]:
            (slots,) = self.memory.incr([slot], 1, [now + SLOT_TTL_S], now)
            if slots > cap:
                self.memory.incr([slot], -1, [now + SLOT_TTL_S], now)
                return [1, slots - 1]
            counts = self.memory.incr(keys, amount, [now + r for r in resets], now)
            if any(c > lim.limit for c, lim in zip(counts, limits, strict=True)):
                self.memory.incr(keys, -amount, [now + r for r in resets], now)
                self.memory.incr([slot], -1, [now + SLOT_TTL_S], now)
                return [2, slots, *counts]
            return [0, slots, *counts]

        out, backend = await self._run(redis_op(), memory_op)
        if out[0] == 1:
            return None
        if not limits:
            return UNLIMITED
        return _decide(limits, out[2:], resets, backend, inclusive=True)

    async def settle(self, bucket: str, kind: str, limits: list[Limit], amount: int) -> None:
        """Give back the slot of `reserve` and count `amount` more (negative: less) tokens, in one
        round trip."""
        now = self._clock()
        slot = self._slot_key(bucket)
        keys, resets = self._keys(kind, limits, now) if amount else ([], [])
        ttls = _ttls(limits) if amount else []

        def memory_op() -> list[int]:
            self.memory.incr(keys, amount, [now + r for r in resets], now)
            return self.memory.incr([slot], -1, [now + SLOT_TTL_S], now)

        await self._run(self._redis_incr([*keys, slot], [*([amount] * len(keys)), -1], [*ttls, SLOT_TTL_S]), memory_op)

    async def acquire(self, bucket: str, cap: int) -> bool:
        """Take one of `cap` concurrent slots of `bucket`; False (and nothing taken) when all are in use."""
        return await self.reserve(bucket, cap, TOKENS, [], 0) is not None

    async def release(self, bucket: str) -> None:
        await self.settle(bucket, TOKENS, [], 0)

    # -- plumbing --------------------------------------------------------------

    def _slot_key(self, bucket: str) -> str:
        return f"{self.prefix}{CONCURRENT}:{bucket}"

    def _keys(self, kind: str, limits: list[Limit], now: float) -> tuple[list[str], list[int]]:
        keys, resets = [], []
        for lim in limits:
            window = int(now // lim.window_s)
            keys.append(f"{self.prefix}{kind}:{lim.bucket}:{lim.window_s}:{window}")
            resets.append(max(1, math.ceil((window + 1) * lim.window_s - now)))
        return keys, resets

    async def _redis_incr(self, keys: list[str], amount: int | list[int], ttls: list[int]) -> list[int]:
        assert self.redis is not None
        amounts = amount if isinstance(amount, list) else [amount] * len(keys)
        pipe = self.redis.pipeline(transaction=False)
        for key, by, ttl in zip(keys, amounts, ttls, strict=True):
            pipe.incrby(key, by)
            pipe.expire(key, ttl)
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
            async with asyncio.timeout(self.timeout_s):  # not wait_for: no extra task per call
                return await redis_op, "redis"
        except (TimeoutError, RedisError, OSError) as exc:
            self._redis_down_until = time.monotonic() + RETRY_REDIS_AFTER_S
            logger.warning(
                "rate limiter: Redis unavailable (%s); counting in this replica's memory for %.0fs",
                type(exc).__name__,
                RETRY_REDIS_AFTER_S,
            )
            return memory_op(), "memory"


def _ttls(limits: list[Limit]) -> list[int]:
    """How long a window's counter is kept: two windows, so it lives to its window's end wherever in it it was made."""
    return [max(2 * lim.window_s, 1) for lim in limits]


def _decide(limits: list[Limit], counts: list[int], resets: list[int], backend: str, *, inclusive: bool) -> Decision:
    """The most constrained bucket decides (and is the one reported in headers)."""
    worst: Decision | None = None
    for lim, count, reset_s in zip(limits, counts, resets, strict=True):
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
