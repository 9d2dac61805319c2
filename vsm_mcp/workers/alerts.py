"""Algedonic alerts: which thresholds one window's rollup breaks, compared with the state before.

Pure: ``judge(previous_state, rollup, thresholds, is_upstream)`` returns what changed. An alert
is raised when a condition starts (``firing``) and once more when it ends (``resolved``), not
at every window while it lasts: a paging channel must not repeat itself every minute.

* ``error_rate`` — ``rollup.error_rate ≥ error_rate`` over at least ``min_calls`` reached calls.
* ``latency`` — p95 at least ``latency_factor`` × the baseline *and* ``latency_floor_ms`` above
  it, over at least ``min_calls`` reached calls. The baseline is an exponentially weighted mean
  of earlier windows' p95 (weight ``BASELINE_WEIGHT`` on the newest), so a lasting change
  becomes the new normal after a few windows and the alert resolves: this is a *jump* detector.
* ``flapping`` (upstreams only) — at least ``flap_changes`` up/down switches in the window.

A window with too few calls to judge leaves an alert as it was (no evidence either way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vsm_mcp.config import Settings
from vsm_mcp.workers.rollup import Rollup

BASELINE_WEIGHT = 0.3
KINDS = ("error_rate", "latency", "flapping")


@dataclass(frozen=True)
class Thresholds:
    min_calls: int = 20
    error_rate: float = 0.25
    latency_factor: float = 2.0
    latency_floor_ms: float = 100.0
    flap_changes: int = 4

    @classmethod
    def from_settings(cls, s: Settings) -> Thresholds:
        return cls(
            min_calls=s.analyzer_min_calls, error_rate=s.analyzer_error_rate,
            latency_factor=s.analyzer_latency_factor, latency_floor_ms=s.analyzer_latency_floor_ms,
            flap_changes=s.analyzer_flap_changes,
        )


@dataclass(frozen=True)
class Change:
    """One alert starting or ending."""

    kind: str
    status: str  # firing | resolved
    value: float
    threshold: float


@dataclass
class Judgement:
    firing: dict[str, dict[str, Any]]  # kind -> {"since", "value", "threshold"}, the new state
    baseline_p95_ms: float | None
    changes: list[Change]


def _verdicts(
    prev_baseline: float | None, r: Rollup, t: Thresholds, is_upstream: bool
) -> dict[str, tuple[bool | None, float, float]]:
    """kind -> (breaking? None = cannot judge, observed value, threshold)."""
    enough = r.reached >= t.min_calls
    out: dict[str, tuple[bool | None, float, float]] = {
        "error_rate": (r.error_rate >= t.error_rate if enough else None, r.error_rate, t.error_rate),
    }
    if prev_baseline is None or not enough:
        out["latency"] = (None, r.p95_ms, 0.0)
    else:
        limit = max(prev_baseline * t.latency_factor, prev_baseline + t.latency_floor_ms)
        out["latency"] = (r.p95_ms >= limit, r.p95_ms, limit)
    if is_upstream:
        out["flapping"] = (r.flaps >= t.flap_changes if r.reached else None, float(r.flaps), float(t.flap_changes))
    return out


def judge(previous: dict[str, Any] | None, r: Rollup, t: Thresholds, *, is_upstream: bool, at: str) -> Judgement:
    """Compare one window's rollup with the previous state of the same key (``at``: window end)."""
    prev = previous or {}
    firing: dict[str, dict[str, Any]] = dict(prev.get("alerts") or {})
    prev_baseline = prev.get("baseline_p95_ms")
    changes: list[Change] = []
    for kind, (breaking, value, threshold) in _verdicts(prev_baseline, r, t, is_upstream).items():
        if breaking is None:
            continue
        if breaking and kind not in firing:
            firing[kind] = {"since": at, "value": value, "threshold": threshold}
            changes.append(Change(kind, "firing", value, threshold))
        elif breaking:
            firing[kind] = {**firing[kind], "value": value}
        elif kind in firing:
            del firing[kind]
            changes.append(Change(kind, "resolved", value, threshold))
    baseline = prev_baseline
    if r.reached >= t.min_calls:  # a handful of calls is no baseline
        baseline = r.p95_ms if baseline is None else (1 - BASELINE_WEIGHT) * baseline + BASELINE_WEIGHT * r.p95_ms
    return Judgement(firing, baseline, changes)
