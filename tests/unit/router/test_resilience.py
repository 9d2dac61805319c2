"""Token buckets, rate limiters and the circuit breaker, on a fake clock."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_mcp.errors import RateLimited, UpstreamTimeout, UpstreamUnavailable
from vsm_mcp.resilience import CircuitBreaker, RateLimiter, TokenBucket, with_timeout


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_bucket_spends_burst_then_refills() -> None:
    clock = Clock()
    b = TokenBucket(2, 3, clock=clock)
    for _ in range(3):
        b.take()
    with pytest.raises(RateLimited) as exc:
        b.take()
    assert exc.value.retry_after == pytest.approx(0.5)
    assert exc.value.to_jsonrpc()["data"]["retry_after"] == 0.5
    clock.t = 0.5
    b.take()


@given(st.floats(0.1, 100), st.floats(1, 50), st.lists(st.floats(0, 2), max_size=60))
def test_bucket_never_exceeds_rate(rate: float, burst: float, gaps: list[float]) -> None:
    """Over any schedule, granted calls <= burst + rate * elapsed."""
    clock = Clock()
    b = TokenBucket(rate, burst, clock=clock)
    granted = 0
    for gap in gaps:
        clock.t += gap
        if b.try_take() == 0:
            granted += 1
    assert granted <= burst + rate * clock.t + 1e-6


def test_limiter_keys_are_independent_and_zero_disables() -> None:
    lim = RateLimiter(1, 1, clock=Clock())
    lim.take("a", "a")
    lim.take("b", "b")
    with pytest.raises(RateLimited, match="rate limit exceeded for a"):
        lim.take("a", "a")
    off = RateLimiter(0, 0)
    for _ in range(1000):
        off.take("a", "a")


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = Clock()
    br = CircuitBreaker("up", threshold=2, reset_after=10, clock=clock)
    br.record_failure()
    br.before_call()
    br.record_failure()
    assert br.state == "open"
    with pytest.raises(UpstreamUnavailable, match="circuit open"):
        br.before_call()
    clock.t = 10
    assert br.state == "half-open"
    br.before_call()  # the one trial call
    with pytest.raises(UpstreamUnavailable, match="probed"):
        br.before_call()
    br.record_failure()  # the trial failed: open again
    assert br.state == "open"
    clock.t = 20
    br.before_call()
    br.record_success()
    assert br.state == "closed"


@pytest.mark.anyio
async def test_with_timeout() -> None:
    async def one() -> int:
        return 1

    assert await with_timeout(one(), 1, "x") == 1
    with pytest.raises(UpstreamTimeout, match="slow did not answer within 0.05s"):
        await with_timeout(anyio.sleep(5), 0.05, "slow")
