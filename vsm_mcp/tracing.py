"""OpenTelemetry spans of tool calls, exported over OTLP when ``VSM_OTEL_ENDPOINT`` is set.

Why after the fact: a span per call built on the hot path would cost the router more than the
rest of its per-call work. The dispatcher already knows everything a span needs — the W3C trace
id, the caller's span (``parent_id``), the span id it sent upstream in ``_meta.traceparent``
(``span_id``), start and duration, outcome — so ``CallSpans`` is a ``CallObserver``: the
recorder hands it each finished call in its background batches, and it builds the span with
those exact ids and times. The upstream's own spans then hang under ours, and ours under the
caller's, in whatever tracing backend the endpoint feeds.

The provider is private to the app (never the global one), like ``Metrics``' registry, so tests
and several apps per process do not share spans. Tests pass the SDK's in-memory exporter.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from vsm_mcp.hooks import CallInfo, CallOutcome

log = logging.getLogger(__name__)


class _GivenIds(IdGenerator):
    """Hands out the ids the dispatcher already chose (set right before each span starts)."""

    def __init__(self) -> None:
        self.trace_id = 0
        self.span_id = 0

    def generate_span_id(self) -> int:
        return self.span_id

    def generate_trace_id(self) -> int:
        return self.trace_id

    def is_trace_id_random(self) -> bool:
        return True


def otlp_exporter(endpoint: str) -> SpanExporter:
    """OTLP over HTTP/protobuf; ``endpoint`` is the collector's base URL (``/v1/traces`` added)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    return OTLPSpanExporter(endpoint=url)


class CallSpans:
    """CallObserver: one SERVER span per tool call; see the module docstring."""

    def __init__(self, exporter: SpanExporter, *, batch: bool = True, service: str = "vsm-mcp") -> None:
        self._ids = _GivenIds()
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}), id_generator=self._ids)
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("vsm_mcp.router")

    async def observe(self, call: CallInfo, outcome: CallOutcome) -> None:
        try:
            self._span(call, outcome)
        except Exception:  # a malformed id must not cost the audit trail or the metrics
            log.warning("could not build the span of %s", call.public_name, exc_info=True)

    def _span(self, call: CallInfo, outcome: CallOutcome) -> None:
        if len(call.trace_id) != 32 or not call.span_id:
            return
        trace_id = int(call.trace_id, 16)
        parent: Any = None
        if call.parent_id:
            parent = set_span_in_context(NonRecordingSpan(SpanContext(
                trace_id, int(call.parent_id, 16), is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )))
        self._ids.trace_id, self._ids.span_id = trace_id, int(call.span_id, 16)
        end_ns = int(outcome.finished_at * 1e9)
        span = self.tracer.start_span(
            f"tools/call {call.public_name}", context=parent, kind=SpanKind.SERVER,
            start_time=end_ns - int(outcome.duration_ms * 1e6),
            attributes={
                "mcp.method.name": "tools/call",
                "gen_ai.tool.name": call.public_name,
                "vsm.server": call.server,
                "vsm.tool": call.tool,
                "vsm.tenant": call.principal.tenant_id,
                "vsm.source": call.source,
                "vsm.outcome": outcome.outcome,
                "vsm.cached": outcome.cached,
            },
        )
        if outcome.outcome != "ok":
            span.set_status(Status(StatusCode.ERROR, outcome.error[:200] or outcome.outcome))
        span.end(end_time=end_ns)

    def shutdown(self) -> None:
        """Flush what is batched and stop the exporter (at the app's shutdown)."""
        self.provider.shutdown()


def call_spans(endpoint: str) -> CallSpans | None:
    """The app's span observer for ``VSM_OTEL_ENDPOINT``; None when it is empty (no tracing)."""
    return CallSpans(otlp_exporter(endpoint)) if endpoint else None
