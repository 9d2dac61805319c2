"""Timeouts, circuit breaking and rate limiting (VSM system 2: anti-oscillation).

* ``TokenBucket`` — ``rate`` tokens per second up to ``burst``; ``take()`` either spends one token
  or raises ``RateLimited`` carrying the seconds until one is available.
* ``RateLimiter`` — one bucket per key (principal, tool …), created lazily, bounded in number.
* ``CircuitBreaker`` — closed → open after ``threshold`` consecutive failures; while open every
  call fails fast with ``UpstreamUnavailable``; after ``reset_after`` seconds one trial call is let
  through (half-open) and its outcome closes or re-opens the circuit.
* ``with_timeout`` — runs an awaitable under a deadline and maps expiry to ``UpstreamTimeout``.

All clocks are ``time.monotonic`` (injectable for tests); nothing here does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from vsm_mcp.errors import InvalidArguments, RateLimited, UpstreamTimeout, UpstreamUnavailable

T = TypeVar("T")
Clock = Callable[[], float]


class TokenBucket:
    """A token bucket: ``rate`` tokens/s refill, at most ``burst`` tokens held."""

    __slots__ = ("rate", "burst", "_tokens", "_stamp", "_clock")

    def __init__(self, rate: float, burst: float, *, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise InvalidArguments(f"a token bucket needs rate > 0 and burst >= 1 (got rate={rate}, burst={burst})")
        self.rate = float(rate)
        self.burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._stamp = now

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def try_take(self, n: float = 1.0) -> float:
        """Spend ``n`` tokens and return 0, or spend nothing and return the seconds to wait."""
        self._refill()
        if self._tokens >= n:
            self._tokens -= n
            return 0.0
        return (n - self._tokens) / self.rate

    def take(self, what: str = "calls") -> None:
        """Spend one token or raise RateLimited with ``retry_after``."""
        wait = self.try_take()
        if wait > 0:
            raise RateLimited(
                f"rate limit exceeded for {what}: {self.rate:g}/s (burst {self.burst:g}); retry in {wait:.3f}s",
                retry_after=wait,
            )


class RateLimiter:
    """Token buckets by key. ``rate <= 0`` disables limiting (``take`` is a no-op)."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 100_000, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, what: str) -> None:
        if self.rate <= 0:
            return
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                # Full buckets are indistinguishable from new ones; dropping them loses nothing.
                self._buckets = {k: b for k, b in self._buckets.items() if b.tokens < b.burst}
                if len(self._buckets) >= self.max_keys:
                    self._buckets.clear()
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, clock=self._clock)
        bucket.take(what)


class CircuitBreaker:
    """Per-upstream circuit breaker (closed / open / half-open)."""

    def __init__(
        self, name: str, *, threshold: int = 5, reset_after: float = 15.0, clock: Clock = time.monotonic
    ) -> None:
        self.name = name
        self.threshold = max(1, threshold)
        self.reset_after = reset_after
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_after:
            return "half-open"
        return "open"

    def before_call(self) -> None:
        """Raise UpstreamUnavailable while open; let exactly one trial through when half-open."""
        if self._opened_at is None:
            return
        remaining = self.reset_after - (self._clock() - self._opened_at)
        if remaining > 0:
            raise UpstreamUnavailable(
                f"upstream {self.name!r} is failing (circuit open); retry in {remaining:.1f}s",
                data={"server": self.name, "retry_after": round(remaining, 3)},
            )
        if self._trial_in_flight:
            raise UpstreamUnavailable(
                f"upstream {self.name!r} is being probed after failures; retry shortly",
                data={"server": self.name, "retry_after": 1.0},
            )
        self._trial_in_flight = True

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._trial_in_flight = False
        self._failures += 1
        if self._failures >= self.threshold or self._opened_at is not None:
            self._opened_at = self._clock()

    def reset(self) -> None:
        """Close the circuit (e.g. after the upstream reconnected)."""
        self.record_success()


async def with_timeout(awaitable: Awaitable[T], seconds: float, what: str) -> T:
    """Await ``awaitable`` for at most ``seconds``; expiry raises UpstreamTimeout naming ``what``."""
    with anyio.move_on_after(seconds) as scope:
        return await awaitable
    if scope.cancelled_caught:
        raise UpstreamTimeout(f"{what} did not answer within {seconds:g}s", data={"timeout_s": seconds})
    raise AssertionError("unreachable")  # pragma: no cover
