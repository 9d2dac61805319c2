"""Request limits of the gate: a token bucket per caller, in this process or shared in Redis.

``LocalLimiter`` keeps the buckets in memory (``vsm_mcp.resilience.RateLimiter``): each replica
grants its full budget. With ``VSM_REDIS_URL`` set, ``RedisLimiter`` keeps one bucket per caller
in Redis, updated by one Lua script (refill and take are one atomic step on the server, so two
replicas can never both spend the last token), and every replica shares it.

``take(key)`` answers 0.0 when the request may go on, else the seconds until a token is there.
If Redis cannot be reached the Redis limiter falls back to this process's own buckets for
``FALLBACK_S`` seconds and logs it once: a limiter outage must not become a gateway outage.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from vsm_mcp.errors import RateLimited
from vsm_mcp.resilience import TokenBucket

log = logging.getLogger(__name__)
FALLBACK_S = 5.0

# KEYS[1] bucket key; ARGV: rate/s, burst, tokens to take. Time comes from the Redis server
# (TIME), so replicas with skewed clocks agree. Returns the wait in microseconds (0 = taken).
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil then
  tokens = burst
  stamp = now
end
if now > stamp then
  tokens = math.min(burst, tokens + (now - stamp) * rate)
end
local wait = 0
if tokens >= want then
  tokens = tokens - want
else
  wait = math.ceil((want - tokens) / rate * 1000000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait
"""


class Limiter(Protocol):
    rate: float
    burst: float

    async def take(self, key: str) -> float: ...

    async def aclose(self) -> None: ...


class LocalLimiter:
    """Buckets in this process, bounded in number (full buckets are dropped first)."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 100_000) -> None:
        self.rate = float(rate)
        self.burst = max(float(burst), 1.0)
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def take_now(self, key: str) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets = {k: b for k, b in self._buckets.items() if b.tokens < b.burst}
                if len(self._buckets) >= self.max_keys:
                    self._buckets.clear()
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.try_take()

    async def take(self, key: str) -> float:
        return self.take_now(key)

    async def aclose(self) -> None:
        return None


class RedisLimiter:
    """One shared bucket per caller in Redis (redis-py asyncio, one Lua script per request)."""

    def __init__(self, url: str, rate: float, burst: float, *, prefix: str = "vsm:rl:") -> None:
        import redis.asyncio as redis  # imported only when configured

        self.rate = float(rate)
        self.burst = max(float(burst), 1.0)
        self.prefix = prefix
        self.url = url
        self.client: Any = redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        self._script = self.client.register_script(TOKEN_BUCKET_LUA)
        self._local = LocalLimiter(rate, burst)
        self._down_until = 0.0

    async def take(self, key: str) -> float:
        now = time.monotonic()
        if now < self._down_until:
            return self._local.take_now(key)
        try:
            wait_us = await self._script(keys=[self.prefix + key], args=[self.rate, self.burst, 1])
        except Exception as exc:  # redis.RedisError, OSError: fall back, never fail the request
            if not self._down_until:
                log.warning("rate limits: Redis at %s unreachable (%s); using per-replica limits for now", self.url, exc)
            self._down_until = now + FALLBACK_S
            return self._local.take_now(key)
        if self._down_until:
            log.info("rate limits: Redis at %s is back; limits are shared again", self.url)
            self._down_until = 0.0
        return int(wait_us) / 1_000_000

    async def aclose(self) -> None:
        await self.client.aclose()


class NoLimit:
    """A rate of 0 switches limiting off (as ``VSM_RATE_LIMIT=0`` always has)."""

    rate = 0.0
    burst = 0.0

    async def take(self, key: str) -> float:
        return 0.0

    async def aclose(self) -> None:
        return None


def make_limiter(rate: float, burst: float, redis_url: str = "", *, name: str = "edge") -> Limiter:
    """``name`` keeps the buckets of two limiters apart in Redis (``vsm:rl:<name>:<caller>``)."""
    if rate <= 0:
        return NoLimit()
    if redis_url:
        return RedisLimiter(redis_url, rate, burst, prefix=f"vsm:rl:{name}:")
    return LocalLimiter(rate, burst)


def limited(who: str, wait: float, rate: float, burst: float) -> RateLimited:
    """The 429 error: it names who was limited and carries ``retry_after``."""
    return RateLimited(
        f"rate limit exceeded for {who}: {rate:g} requests/s (burst {burst:g}); retry in {wait:.3f}s",
        retry_after=wait, data={"limited": who},
    )
