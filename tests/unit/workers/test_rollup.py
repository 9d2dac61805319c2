"""Rollups against a brute-force computation of the same definitions (vsm_mcp/workers/rollup.py)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from vsm_mcp.workers.rollup import DOWN, REJECTED, Sample, nearest_rank, roll_up

T0 = datetime(2026, 12, 7, tzinfo=UTC)
OUTCOMES = ["ok", "ok", "ok", "tool_error", "upstream_timeout", "upstream_unavailable", "rate_limited",
            "policy_denied", "internal"]

samples_st = st.lists(
    st.builds(
        Sample,
        at=st.integers(0, 600_000).map(lambda ms: T0 + timedelta(milliseconds=ms)),
        server=st.sampled_from(["a", "b", "c"]),
        tool=st.sampled_from(["x", "y"]),
        outcome=st.sampled_from(OUTCOMES),
        duration_ms=st.floats(0, 10_000, allow_nan=False).map(lambda v: round(v, 3)),
    ),
    max_size=200,
)


def brute_percentile(values: list[float], pct: float) -> float:
    """The smallest observed value with at least pct % of the values at or below it."""
    if not values:
        return 0.0
    return min(v for v in values if sum(1 for x in values if x <= v) * 100 >= pct * len(values))


def brute(samples: list[Sample]) -> dict[str, object]:
    ordered = sorted(samples, key=lambda s: s.at)
    reached = [s for s in ordered if s.outcome not in REJECTED]
    flags = [s.outcome in DOWN for s in reached]
    ok = sum(1 for s in samples if s.outcome == "ok")
    return {
        "calls": len(samples),
        "ok": ok,
        "reached": len(reached),
        "errors": dict(Counter(s.outcome for s in samples if s.outcome != "ok")),
        "p50_ms": brute_percentile([s.duration_ms for s in reached], 50),
        "p95_ms": brute_percentile([s.duration_ms for s in reached], 95),
        "flaps": sum(1 for a, b in zip(flags, flags[1:], strict=False) if a != b),
        "success_rate": ok / len(samples) if samples else 1.0,
        "error_rate": (len(reached) - ok) / len(reached) if reached else 0.0,
    }


def observed(r: object) -> dict[str, object]:
    return {k: getattr(r, k) for k in ("calls", "ok", "reached", "errors", "p50_ms", "p95_ms", "flaps",
                                      "success_rate", "error_rate")}


@given(samples_st)
def test_rollups_match_brute_force_per_upstream_and_tool(samples: list[Sample]) -> None:
    got = roll_up(samples)
    assert set(got.upstreams) == {s.server for s in samples}
    assert set(got.tools) == {(s.server, s.tool) for s in samples}
    for server, r in got.upstreams.items():
        assert observed(r) == brute([s for s in samples if s.server == server])
    for (server, tool), r in got.tools.items():
        assert observed(r) == brute([s for s in samples if (s.server, s.tool) == (server, tool)])


@given(samples_st)
def test_rollup_does_not_depend_on_input_order_when_times_differ(samples: list[Sample]) -> None:
    distinct = list({s.at: s for s in samples}.values())
    a, b = roll_up(distinct), roll_up(list(reversed(distinct)))
    assert {k: r.to_dict() for k, r in a.upstreams.items()} == {k: r.to_dict() for k, r in b.upstreams.items()}


def test_nearest_rank_on_known_values() -> None:
    values = [float(v) for v in range(1, 101)]
    assert nearest_rank(values, 50) == 50.0
    assert nearest_rank(values, 95) == 95.0
    assert nearest_rank([7.0], 95) == 7.0
    assert nearest_rank([], 50) == 0.0


def test_rejected_calls_count_as_calls_but_not_latency_or_errors_of_the_upstream() -> None:
    r = roll_up([
        Sample(T0, "s", "t", "ok", 100.0),
        Sample(T0 + timedelta(seconds=1), "s", "t", "rate_limited", 0.1),
    ]).upstreams["s"]
    assert (r.calls, r.reached, r.success_rate, r.error_rate, r.p50_ms) == (2, 1, 0.5, 0.0, 100.0)
    assert r.errors == {"rate_limited": 1}


def test_flaps_count_switches_between_down_and_up() -> None:
    outcomes = ["ok", "upstream_unavailable", "ok", "upstream_timeout", "tool_error", "ok"]
    r = roll_up([Sample(T0 + timedelta(seconds=i), "s", "t", o, 1.0) for i, o in enumerate(outcomes)])
    assert r.upstreams["s"].flaps == 4
