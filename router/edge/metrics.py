"""``GET /metrics`` and the dispatch observer that feeds it.

``CallTelemetry`` is a ``vsm_mcp.hooks.CallObserver``: after every tool call (off the caller's
path — the router's recorder runs observers in batches) it updates the call counters and latency
histogram, cache hits/misses and rate-limit rejections, and publishes ``tool.called`` (outcome
ok) or ``tool.failed`` (tool error or pipeline error) on the bus for the caller's tenant.

State gauges (DB pool, upstream up/breaker) are read at scrape time by ``add_state_collectors``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vsm_mcp.bus import Bus
from vsm_mcp.bus.events import Event
from vsm_mcp.db import Database
from vsm_mcp.hooks import CallInfo, CallOutcome
from vsm_mcp.telemetry import CONTENT_TYPE, Metrics

log = logging.getLogger("vsm_mcp.edge.metrics")


class CallTelemetry:
    """CallObserver: metrics plus ``tool.called`` / ``tool.failed`` events."""

    def __init__(self, metrics: Metrics, bus: Bus | None) -> None:
        self.metrics = metrics
        self.bus = bus

    async def observe(self, call: CallInfo, outcome: CallOutcome) -> None:
        m = self.metrics
        server, tool = call.server or "-", call.tool or call.public_name
        m.tool_calls.labels(server, tool, outcome.outcome).inc()
        m.tool_latency.labels(server, tool).observe(outcome.duration_ms / 1000)
        if call.cache:  # what the tool cache did (hit, miss, shared); nothing when no cache looked
            m.cache.labels(call.cache).inc()
        if outcome.outcome == "rate_limited":
            m.rate_limited.labels("tool").inc()
        if self.bus is None or not call.principal.tenant_id:
            return
        event = Event(
            topic="tool.called" if outcome.outcome == "ok" else "tool.failed",
            tenant=call.principal.tenant_id,
            type="tool_call",
            trace_id=call.trace_id,
            data={
                "server": call.server, "tool": call.tool, "public_name": call.public_name,
                "outcome": outcome.outcome, "duration_ms": round(outcome.duration_ms, 3),
                "cached": outcome.cached, "source": call.source, "principal": call.principal.id,
                "error": outcome.error[:500], "tags": list(call.tags),  # tags: the policy evaluator judges on them
            },
        )
        try:
            await self.bus.publish(event)
            m.events_published.inc()
        except Exception:  # the bus being down must not stop metrics or the audit trail
            log.warning("could not publish %s", event.topic, exc_info=True)


def add_state_collectors(
    metrics: Metrics, db: Database, upstream_status: Callable[[], dict[str, dict[str, Any]]] | None = None,
    pending: Callable[[], int] | None = None,
) -> None:
    """Refresh DB pool, upstream and event-log gauges at every scrape."""
    zombies_seen: dict[str, float] = {}

    def collect(m: Metrics) -> None:
        pool = db.pool_status()
        m.db_pool.labels("size").set(pool.get("size", 0))
        m.db_pool.labels("checked_out").set(pool.get("checked_out", 0))
        if upstream_status is not None:
            for name, st in upstream_status().items():
                m.upstream_up.labels(name).set(1 if st.get("state") == "ready" else 0)
                m.set_breaker(name, str(st.get("circuit", "closed")).replace("-", "_"))
                m.upstream_draining.labels(name).set(st.get("draining", 0))
                zombies = float(st.get("zombies", 0))  # the upstream counts; the counter follows
                if zombies > zombies_seen.get(name, 0.0):
                    m.zombies.labels("stdio", name).inc(zombies - zombies_seen.get(name, 0.0))
                zombies_seen[name] = zombies
        if pending is not None:
            m.event_log_pending.set(pending())

    metrics.add_collect_hook(collect)


def add_cache_collector(metrics: Metrics, stats: Callable[[], dict[str, Any]]) -> None:
    """Tool-cache evictions and sizes at every scrape (the cache keeps plain counters)."""
    seen: dict[str, float] = {}

    def collect(m: Metrics) -> None:
        s = stats()
        for reason in ("size", "expired"):
            total = float(s.get(f"evicted_{reason}", 0))
            delta = total - seen.get(reason, 0.0)
            if delta > 0:
                m.cache_evictions.labels(reason).inc(delta)
            seen[reason] = total
        m.cache_entries.labels("memory").set(s.get("memory_entries", 0))
        if "backend_entries" in s:
            m.cache_entries.labels("backend").set(s["backend_entries"])

    metrics.add_collect_hook(collect)


def metrics_endpoint(metrics: Metrics) -> Callable[[Request], Any]:
    """The ``GET /metrics`` handler (Prometheus text format)."""

    async def handler(_request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return handler


def add_recorder_collector(metrics: Metrics, recorder: Any) -> None:
    """``vsm_episodes{state}`` from the router's recorder at every scrape (written, pending, dropped,
    lost, recovered): a growing ``lost`` means audit records are gone; ``dropped`` alone means
    the queue overflowed or the database refused a batch and the journal is covering for it."""

    def collect(m: Metrics) -> None:
        for state in ("written", "pending", "dropped", "lost", "recovered"):
            m.episodes.labels(state).set(getattr(recorder, state, 0))

    metrics.add_collect_hook(collect)
