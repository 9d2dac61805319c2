"""Prometheus metrics and W3C trace context.

``Metrics`` owns its own ``CollectorRegistry`` (never the process-global one), so every app
built in a test or a benchmark has independent counters. Gauges that describe *state* (DB pool,
upstream health, breaker state) are filled at scrape time by collect hooks, so nothing has to
remember to update them.

Trace context follows https://www.w3.org/TR/trace-context/ ``traceparent``:
``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("vsm_mcp.telemetry")

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}

CollectHook = Callable[["Metrics"], None]


class Metrics:
    """Every metric vsm-mcp exports, on one private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tool_calls = Counter(
            "vsm_tool_calls", "Tool calls by server, tool and outcome (ok, tool_error or an error label).",
            ["server", "tool", "outcome"], registry=r,
        )
        self.tool_latency = Histogram(
            "vsm_tool_call_duration_seconds", "Tool call latency through the dispatch pipeline.",
            ["server", "tool"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.cache = Counter("vsm_cache_requests", "Tool-result cache lookups by result: hit (served from the "
                             "cache), miss (the upstream was called), shared (waited on an identical call in flight).",
                             ["result"], registry=r)
        self.cache_evictions = Counter("vsm_cache_evictions", "Tool-result cache entries dropped from memory, by "
                                       "reason (size, expired).", ["reason"], registry=r)
        self.cache_entries = Gauge("vsm_cache_entries", "Tool-result cache entries, by level (memory, backend).",
                                   ["level"], registry=r)
        self.rate_limited = Counter("vsm_rate_limited", "Requests rejected by a rate limit, by where.",
                                    ["where"], registry=r)
        self.sse_connections = Gauge("vsm_sse_connections", "Open SSE connections.", registry=r)
        self.sse_events = Counter("vsm_sse_events_sent", "Events written to SSE connections.", registry=r)
        self.sse_dropped = Counter("vsm_sse_dropped_events",
                                   "Events not delivered to an SSE connection, by reason (overflow).",
                                   ["reason"], registry=r)
        self.events_published = Counter("vsm_bus_events_published", "Events published on the bus by this process.",
                                        registry=r)
        self.event_log_pending = Gauge("vsm_event_log_pending", "Events waiting to be written to the event log.",
                                       registry=r)
        self.upstream_up = Gauge("vsm_upstream_up", "1 when an upstream is connected and serving.",
                                 ["upstream"], registry=r)
        self.upstream_draining = Gauge("vsm_upstream_draining", "Sessions of an upstream being drained as zombies.",
                                       ["upstream"], registry=r)
        self.zombies = Counter("vsm_zombies", "Zombies detected and drained, by kind (stdio: an upstream "
                               "child, where = the upstream; sse: a connection, where = its tenant).",
                               ["kind", "where"], registry=r)
        self.breaker_state = Gauge("vsm_upstream_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.",
                                   ["upstream"], registry=r)
        self.db_pool = Gauge("vsm_db_pool_connections", "Database pool connections by state (size, checked_out).",
                             ["state"], registry=r)
        # Audit trail (router/recorder.py), read from the recorder at scrape time.
        self.episodes = Gauge(
            "vsm_episodes", "Episodes by state: written (to the database), pending (queued), dropped (not "
            "queued: observers skipped; replayed from the journal), lost (in neither database nor journal), "
            "recovered (replayed from a journal).", ["state"], registry=r,
        )
        # Per-route HTTP figures (router/edge/route_metrics.py); route = the route's template.
        self.http_requests = Counter("vsm_http_requests", "HTTP requests by route template, method and status.",
                                     ["route", "method", "status"], registry=r)
        self.http_latency = Histogram("vsm_http_request_duration_seconds", "HTTP request latency by route template.",
                                      ["route", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self._hooks: list[CollectHook] = []

    def add_collect_hook(self, hook: CollectHook) -> None:
        """``hook(metrics)`` runs before every scrape to refresh state gauges."""
        self._hooks.append(hook)

    def set_breaker(self, upstream: str, state: str) -> None:
        self.breaker_state.labels(upstream).set(BREAKER_STATES.get(state, 2))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        for hook in self._hooks:
            try:
                hook(self)
            except Exception:  # a broken gauge must not take the whole scrape down
                log.warning("metrics collect hook %r failed", hook, exc_info=True)
        return generate_latest(self.registry)


_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceContext:
    """One W3C trace context: the trace id every event and episode of a request carries."""

    trace_id: str
    parent_id: str
    flags: str = "01"

    def child(self) -> TraceContext:
        """The context for a new span of the same trace."""
        return TraceContext(self.trace_id, secrets.token_hex(8), self.flags)

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags}"


def parse_traceparent(value: str | None) -> TraceContext | None:
    """Parse a ``traceparent`` header; None when absent or invalid (the spec says: start a new trace).

    The edge accepting an incoming ``traceparent`` and passing it upstream is issue 19's work."""
    if not value:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if not m:
        return None
    version, trace_id, parent_id, flags = m.groups()
    if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return TraceContext(trace_id, parent_id, flags)


def new_trace() -> TraceContext:
    """A fresh, sampled trace context."""
    return TraceContext(secrets.token_hex(16), secrets.token_hex(8), "01")


def trace_from_headers(value: str | None) -> TraceContext:
    """The caller's trace continued as a child span, or a new trace."""
    parsed = parse_traceparent(value)
    return parsed.child() if parsed else new_trace()
