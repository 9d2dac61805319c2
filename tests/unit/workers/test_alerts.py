"""Threshold judgement: alerts fire once when a condition starts and resolve once when it ends."""

from __future__ import annotations

from vsm_mcp.workers.alerts import Thresholds, judge
from vsm_mcp.workers.rollup import Rollup

T = Thresholds(min_calls=10, error_rate=0.25, latency_factor=2.0, latency_floor_ms=100.0, flap_changes=4)


def window(reached: int = 20, ok: int = 20, p95: float = 50.0, flaps: int = 0) -> Rollup:
    return Rollup(calls=reached, ok=ok, reached=reached, p50_ms=p95 / 2, p95_ms=p95, flaps=flaps)


def run(seq: list[Rollup], upstream: bool = True) -> list[list[tuple[str, str]]]:
    state: dict[str, object] | None = None
    seen = []
    for i, r in enumerate(seq):
        j = judge(state, r, T, is_upstream=upstream, at=f"t{i}")
        state = {"alerts": j.firing, "baseline_p95_ms": j.baseline_p95_ms}
        seen.append([(c.kind, c.status) for c in j.changes])
    return seen


def test_error_rate_fires_once_then_resolves() -> None:
    seq = [window(), window(ok=10), window(ok=5), window(ok=20)]
    assert run(seq) == [[], [("error_rate", "firing")], [], [("error_rate", "resolved")]]


def test_too_few_calls_neither_fire_nor_resolve() -> None:
    seq = [window(reached=5, ok=0), window(ok=0), window(reached=3, ok=3), window()]
    assert run(seq) == [[], [("error_rate", "firing")], [], [("error_rate", "resolved")]]


def test_latency_jump_against_the_baseline_then_absorbed_as_new_normal() -> None:
    seq = [window(p95=50), window(p95=400)] + [window(p95=400)] * 8
    out = run(seq)
    assert out[0] == [] and out[1] == [("latency", "firing")]
    assert ("latency", "resolved") in [c for changes in out[2:] for c in changes]


def test_latency_needs_both_the_factor_and_the_floor() -> None:
    assert run([window(p95=10), window(p95=60)]) == [[], []]  # 6x but only 50 ms above
    assert run([window(p95=1000), window(p95=1150)]) == [[], []]  # 150 ms above but 1.15x


def test_flapping_only_for_upstreams() -> None:
    assert run([window(flaps=5)]) == [[("flapping", "firing")]]
    assert run([window(flaps=5)], upstream=False) == [[]]


def test_a_firing_alert_keeps_its_start_time() -> None:
    j1 = judge(None, window(ok=0), T, is_upstream=True, at="t1")
    j2 = judge({"alerts": j1.firing, "baseline_p95_ms": j1.baseline_p95_ms}, window(ok=1), T, is_upstream=True, at="t2")
    assert j2.firing["error_rate"]["since"] == "t1" and j2.changes == []
