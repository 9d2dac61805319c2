"""Rollups of episodes: what one window of tool calls looked like, per upstream and per tool.

Pure functions over ``Sample`` tuples (no I/O), so the arithmetic is tested against a brute-force
computation on its own (tests/unit/workers/test_rollup.py).

Definitions (docs/ARCHITECTURE.md, "Workers"):

* ``calls`` — every episode in the window; ``ok`` — those whose outcome is ``ok``;
  ``success_rate = ok / calls``.
* ``errors`` — count per outcome for every outcome but ``ok`` (``tool_error``,
  ``upstream_timeout``, ``rate_limited`` …): the error classes.
* *Rejected* calls (refused by the router before the upstream saw them: rate limits, scopes,
  policy, bad arguments) say nothing about the upstream's health. ``reached`` counts the others;
  ``error_rate = (reached - ok) / reached`` and the latency percentiles are over reached calls.
* Percentiles are nearest-rank: the smallest value with at least p % of the values ≤ it.
* ``flaps`` — for an upstream, how often its calls, in time order, switched between *down*
  (``upstream_unavailable`` / ``upstream_timeout``) and *up* (any other reached outcome).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

REJECTED = frozenset(
    {"rate_limited", "policy_denied", "invalid_arguments", "unauthorized", "forbidden", "not_found",
     "quota_exceeded"}
)
DOWN = frozenset({"upstream_unavailable", "upstream_timeout"})


class Sample(NamedTuple):
    """The columns of one episode the analyzer reads."""

    at: datetime
    server: str
    tool: str
    outcome: str
    duration_ms: float


def nearest_rank(sorted_values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0 < pct ≤ 100) of already sorted values; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


@dataclass
class Rollup:
    """Counters and percentiles of one key (an upstream, or one tool of it) over one window."""

    calls: int = 0
    ok: int = 0
    reached: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    flaps: int = 0

    @property
    def success_rate(self) -> float:
        return self.ok / self.calls if self.calls else 1.0

    @property
    def error_rate(self) -> float:
        return (self.reached - self.ok) / self.reached if self.reached else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "ok": self.ok, "reached": self.reached,
            "success_rate": round(self.success_rate, 6), "error_rate": round(self.error_rate, 6),
            "p50_ms": self.p50_ms, "p95_ms": self.p95_ms, "errors": dict(sorted(self.errors.items())),
            "flaps": self.flaps,
        }


class _Acc:
    __slots__ = ("calls", "ok", "errors", "latencies", "last_down", "flaps")

    def __init__(self) -> None:
        self.calls = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.latencies: list[float] = []
        self.last_down: bool | None = None
        self.flaps = 0

    def add(self, s: Sample) -> None:
        self.calls += 1
        if s.outcome == "ok":
            self.ok += 1
        else:
            self.errors[s.outcome] = self.errors.get(s.outcome, 0) + 1
        if s.outcome in REJECTED:
            return
        self.latencies.append(s.duration_ms)
        down = s.outcome in DOWN
        if self.last_down is not None and down != self.last_down:
            self.flaps += 1
        self.last_down = down

    def finish(self) -> Rollup:
        lat = sorted(self.latencies)
        return Rollup(
            calls=self.calls, ok=self.ok, reached=len(lat), errors=self.errors,
            p50_ms=nearest_rank(lat, 50), p95_ms=nearest_rank(lat, 95), flaps=self.flaps,
        )


@dataclass
class WindowRollup:
    """One tenant's window: a rollup per upstream and per (upstream, tool)."""

    upstreams: dict[str, Rollup]
    tools: dict[tuple[str, str], Rollup]


def roll_up(samples: Iterable[Sample]) -> WindowRollup:
    """Roll samples up per upstream and per tool. Samples are sorted by time here (flaps
    depend on order); ties keep their given order."""
    ups: dict[str, _Acc] = {}
    tools: dict[tuple[str, str], _Acc] = {}
    for s in sorted(samples, key=lambda x: x.at):
        acc = ups.get(s.server)
        if acc is None:
            acc = ups[s.server] = _Acc()
        acc.add(s)
        key = (s.server, s.tool)
        tacc = tools.get(key)
        if tacc is None:
            tacc = tools[key] = _Acc()
        tacc.add(s)
    return WindowRollup(
        upstreams={k: a.finish() for k, a in ups.items()},
        tools={k: a.finish() for k, a in tools.items()},
    )
