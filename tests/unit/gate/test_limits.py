"""The gate's limiters: local buckets, and one bucket shared through Redis by a Lua script."""

from __future__ import annotations

import uuid

import pytest

from router.gate.limits import LocalLimiter, NoLimit, RedisLimiter, limited, make_limiter

pytestmark = pytest.mark.anyio
REDIS_URL = "redis://127.0.0.1:6379/0"


async def test_local_bucket() -> None:
    lim = LocalLimiter(rate=1, burst=3)
    waits = [await lim.take("k") for _ in range(4)]
    assert waits[:3] == [0, 0, 0] and 0 < waits[3] <= 1.0
    assert await lim.take("other") == 0  # one bucket per caller
    assert isinstance(make_limiter(0, 10), NoLimit) and await NoLimit().take("x") == 0


@pytest.mark.redis
async def test_redis_bucket_is_shared_by_limiters() -> None:
    key = f"test-{uuid.uuid4().hex}"
    a, b = RedisLimiter(REDIS_URL, rate=1, burst=4), RedisLimiter(REDIS_URL, rate=1, burst=4)
    try:
        waits = [await (a if i % 2 else b).take(key) for i in range(6)]
        assert waits[:4] == [0, 0, 0, 0] and all(0 < w <= 2.0 for w in waits[4:]), waits
        ttl = await a.client.pttl(a.prefix + key)
        assert 0 < ttl <= 5000  # buckets expire once they would be full again
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_down_falls_back_to_local_buckets() -> None:
    lim = RedisLimiter("redis://127.0.0.1:1/0", rate=1, burst=2)  # nothing listens on port 1
    try:
        waits = [await lim.take("k") for _ in range(3)]
        assert waits[:2] == [0, 0] and waits[2] > 0
    finally:
        await lim.aclose()


def test_429_names_who() -> None:
    exc = limited("API key k1 (tenant acme)", 0.2, 5, 10)
    assert exc.status == 429 and exc.retry_after == 0.2
    assert "API key k1 (tenant acme)" in exc.message and exc.data["limited"] == "API key k1 (tenant acme)"
