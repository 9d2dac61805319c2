"""vsm_mcp/tracing.py: a finished call becomes one SERVER span with the dispatcher's ids, exported
through the SDK (its in-memory exporter here; OTLP when VSM_OTEL_ENDPOINT is set)."""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from vsm_mcp.auth import Principal
from vsm_mcp.hooks import CallInfo, CallOutcome
from vsm_mcp.tracing import CallSpans, call_spans, otlp_exporter

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def call(trace: str, span: str, parent: str = "") -> CallInfo:
    p = Principal(tenant_id="t1", scopes=frozenset({"*"}), key_id="k")
    return CallInfo(p, "srv__add", "srv", "add", {}, source="mcp", trace_id=trace, span_id=span, parent_id=parent)


async def test_span_carries_the_calls_ids_times_and_outcome() -> None:
    exporter = InMemorySpanExporter()
    spans = CallSpans(exporter, batch=False)
    now = time.time()
    trace, parent, span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "1122334455667788"
    await spans.observe(call(trace, span, parent), CallOutcome("ok", 12.5, finished_at=now))
    await spans.observe(call("a" * 32, "b" * 16), CallOutcome("tool_error", 1.0, error="boom", finished_at=now))
    await spans.observe(call("short", "x"), CallOutcome("ok", 1.0, finished_at=now))  # no W3C id: no span
    got = exporter.get_finished_spans()
    assert len(got) == 2
    first, second = got
    assert first.name == "tools/call srv__add" and first.kind == SpanKind.SERVER
    assert f"{first.context.trace_id:032x}" == trace and f"{first.context.span_id:016x}" == span
    assert first.parent is not None and f"{first.parent.span_id:016x}" == parent
    assert first.end_time - first.start_time == pytest.approx(12.5e6, rel=1e-3)
    assert first.attributes["vsm.tenant"] == "t1" and first.attributes["vsm.outcome"] == "ok"
    assert second.parent is None and second.status.status_code == StatusCode.ERROR
    spans.shutdown()


def test_no_endpoint_no_tracing() -> None:
    assert call_spans("") is None
    exporter = otlp_exporter("http://127.0.0.1:4318")
    assert exporter._endpoint == "http://127.0.0.1:4318/v1/traces"  # noqa: SLF001
    exporter.shutdown()
