"""Every pattern kind: the incremental engine against the brute-force reference (servers/cep/brute.py)
over random event sequences with random timestamps (ties, gaps, and times that go backwards)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servers.cep.brute import brute_matches
from servers.cep.engine import run_rule
from servers.cep.lang import parse_rule
from servers.cep.matchers import Match

TOPICS = ["a", "b", "c", "x.y"]

RULES = [
    "a",
    "a[data.v > 2] by data.k",
    "a -> b within 5s",
    "a -> b within 5s by data.k",
    "a[data.v >= 3] -> b -> c within 10s by data.k",
    "a -> a within 2s",
    "x.* -> a[data.v < 3] within 3s",
    "a -> not b for 4s",
    "a -> not b for 4s by data.k",
    "a -> not a for 3s by data.k",
    "# -> not b[data.v == 1] for 2500ms",
    "count(a) >= 3 within 5s",
    "count(a) >= 2 within 3s by data.k",
    "count(a[data.v != 0]) < 2 within 4s",
    "sum(a, data.v) > 6 within 5s by data.k",
    "sum(#, data.f) >= 1.5 within 2s",
    "count(a) >= 2 within 5s tumbling",
    "count(a) >= 2 within 3s tumbling by data.k",
    "sum(b, data.f) <= 1.0 within 4s tumbling by data.k",
    "count(a) == 1 within 2s tumbling",
]

event = st.fixed_dictionaries({
    "topic": st.sampled_from(TOPICS),
    "k": st.sampled_from(["p", "q", None]),
    "v": st.integers(0, 5),
    "f": st.one_of(st.floats(-3, 3, allow_nan=False, width=32), st.just("n/a")),
    "dt": st.sampled_from([0.0, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.5]),
})


def _events(raw: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float]]:
    t, out = 1000.0, []
    for i, r in enumerate(raw):
        t += r["dt"]  # a negative gap: an event stamped before the clock (the engine clamps it)
        data: dict[str, Any] = {"v": r["v"], "f": r["f"]}
        if r["k"] is not None:
            data["k"] = r["k"]
        out.append(({"id": f"e{i}", "topic": r["topic"], "tenant": "t", "type": "", "time": "", "data": data,
                     "trace_id": ""}, t))
    return out


def canon(matches: list[Match]) -> list[tuple[Any, ...]]:
    return sorted((m.kind, str(m.key), m.time, tuple(e["id"] for e in m.events), m.value) for m in matches)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=st.sampled_from(RULES), raw=st.lists(event, max_size=40), tail=st.sampled_from([None, 0.0, 3.0, 100.0]))
def test_engine_agrees_with_brute_force(rule: str, raw: list[dict[str, Any]], tail: float | None) -> None:
    events = _events(raw)
    until = None if tail is None else (events[-1][1] if events else 1000.0) + tail
    parsed = parse_rule(rule)
    assert canon(run_rule(parsed, events, until=until)) == canon(brute_matches("test", parsed, events, until))
