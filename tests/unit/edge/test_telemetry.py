from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from vsm_mcp.telemetry import Metrics, TraceContext, new_trace, parse_traceparent, trace_from_headers

hexs = st.text(alphabet="0123456789abcdef", min_size=1, max_size=1)


@given(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
       st.text(alphabet="0123456789abcdef", min_size=16, max_size=16),
       st.sampled_from(["00", "01"]))
def test_traceparent_round_trip(trace_id: str, parent: str, flags: str) -> None:
    ctx = TraceContext(trace_id, parent, flags)
    parsed = parse_traceparent(ctx.header())
    if trace_id == "0" * 32 or parent == "0" * 16:
        assert parsed is None  # all-zero ids are invalid per the spec
    else:
        assert parsed == ctx


@pytest.mark.parametrize(
    "value",
    [
        None, "", "garbage", "00-abc-def-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is forbidden
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    ],
)
def test_invalid_traceparent_is_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_trace_from_headers_continues_or_starts() -> None:
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    child = trace_from_headers(incoming)
    assert child.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" and child.parent_id != "00f067aa0ba902b7"
    fresh = trace_from_headers("nonsense")
    assert len(fresh.trace_id) == 32 and fresh.trace_id != new_trace().trace_id


def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.tool_calls.labels("s", "t", "ok").inc()
    a.set_breaker("up", "open")
    b.add_collect_hook(lambda m: m.db_pool.labels("size").set(7))

    def value(m: Metrics, name: str, **labels: str) -> float | None:
        for fam in text_string_to_metric_families(m.render().decode()):
            for s in fam.samples:
                if s.name == name and s.labels == labels:
                    return float(s.value)
        return None

    assert value(a, "vsm_tool_calls_total", server="s", tool="t", outcome="ok") == 1
    assert value(b, "vsm_tool_calls_total", server="s", tool="t", outcome="ok") is None
    assert value(a, "vsm_upstream_breaker_state", upstream="up") == 2
    assert value(b, "vsm_db_pool_connections", state="size") == 7


def test_a_failing_collect_hook_does_not_break_the_scrape() -> None:
    m = Metrics()

    def broken(_m: Metrics) -> None:
        raise RuntimeError("boom")

    m.add_collect_hook(broken)
    assert b"vsm_tool_calls" in m.render()
