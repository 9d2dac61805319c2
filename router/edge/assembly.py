"""The edge, assembled: metrics, event log, SSE hub, Telegram bot and their routes.

Every route but /metrics, /healthz and /readyz is declared with ``gated_route`` (router/gate):
the app's gate authenticates, limits and audits; handlers read the gate's principal.

``router/app.py`` builds one ``Edge`` per app, appends ``edge.routes()`` to its routes, adds
``edge.observer`` to the dispatcher and runs ``edge.start()`` / ``edge.aclose()`` in its
lifespan. Tests and the benchmark build an ``Edge`` around a bare Starlette app the same way.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.routing import BaseRoute, Route

from router.edge._auth import Authenticate
from router.edge.health import Readiness, healthz, readyz_endpoint
from router.edge.metrics import CallTelemetry, add_state_collectors, metrics_endpoint
from router.edge.sse import EventsEndpoint, SseHub
from router.edge.telegram import CallTool, ListTools, TelegramBot
from router.gate.route import TOOL_CALL, gated_route, principal
from vsm_mcp.auth import Principal, grants
from vsm_mcp.bus.events import EventLog
from vsm_mcp.config import Settings
from vsm_mcp.context import ServerContext
from vsm_mcp.telemetry import Metrics


def catalog_lister(tools: Callable[[], Iterable[Any]]) -> ListTools:
    """``/tools`` over a catalog: available tools the principal may call, matching every query word."""

    async def list_tools(principal: Principal, query: str) -> list[tuple[str, str]]:
        words = [w for w in re.split(r"\W+", query.lower()) if w]
        out = []
        for t in tools():
            if not getattr(t, "available", True) or not grants(principal.scopes, t.tags):
                continue
            hay = f"{t.public_name} {t.description}".lower()
            if all(w in hay for w in words):
                out.append((t.public_name, t.description or ""))
        return sorted(out)

    return list_tools


def status_text(readiness: Readiness | None) -> Callable[[], Awaitable[str]]:
    async def status() -> str:
        if readiness is None:
            return "vsm-mcp is running."
        summary = readiness()
        ups = summary.get("upstreams", {})
        lines = [f"vsm-mcp: {'ready' if summary.get('ok') else 'NOT ready'}"]
        lines += [f"- {name}: {st.get('state')} ({st.get('tools', 0)} tools)" for name, st in sorted(ups.items())]
        return "\n".join(lines)

    return status


class Edge:
    """Everything under router/edge/ for one app."""

    def __init__(
        self, settings: Settings, ctx: ServerContext, *, authenticate: Authenticate = principal,
        call_tool: CallTool | None = None, list_tools: ListTools | None = None,
        readiness: Readiness | None = None, metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.ctx = ctx
        self.metrics = metrics or Metrics()
        self.event_log = EventLog(
            ctx.db, retention_hours=settings.event_log_retention_hours, flush_ms=settings.event_log_flush_ms
        )
        ctx.bus.add_tap(self.event_log.append)
        self.hub = SseHub(
            ctx.bus, self.event_log, self.metrics, queue_size=settings.sse_queue_size,
            heartbeat_s=settings.sse_heartbeat_s, replay_max=settings.sse_replay_max,
            buffer_bytes=settings.sse_buffer_bytes, direct_write=settings.sse_direct_write,
            stall_s=settings.sse_stall_s,
        )
        self.observer = CallTelemetry(self.metrics, ctx.bus)
        self.readiness = readiness
        upstream_status = (lambda: readiness().get("upstreams", {})) if readiness else None
        add_state_collectors(self.metrics, ctx.db, upstream_status, lambda: len(self.event_log._pending))
        self.events = EventsEndpoint(self.hub, authenticate)
        self.telegram: TelegramBot | None = None
        if call_tool is not None:
            self.telegram = TelegramBot(
                settings, ctx.db, call_tool=call_tool,
                list_tools=list_tools or (lambda _p, _q: _empty()), status=status_text(readiness),
                metrics=self.metrics,
            )

    def routes(self, *, health: bool = True) -> list[BaseRoute]:
        """The edge routes; ``health=False`` leaves /healthz and /readyz to the caller."""
        routes: list[BaseRoute] = [
            gated_route("/v1/events", self.events, methods=["GET"], capability="events:read",
                        action="events__subscribe", asgi=True, name="events"),
            Route("/metrics", metrics_endpoint(self.metrics), methods=["GET"], name="metrics"),
        ]
        if self.telegram is not None:  # each command is a tool call of the chat's principal, through dispatch
            routes.append(gated_route("/v1/telegram/webhook", self.telegram.handle, methods=["POST"],
                                      capability=TOOL_CALL, auth="webhook", name="telegram"))
        if health:
            routes += [
                Route("/healthz", healthz, methods=["GET"]),
                Route("/readyz", readyz_endpoint(self.ctx.db, self.ctx.bus, self.readiness), methods=["GET"]),
            ]
        return routes

    async def start(self) -> None:
        await self.event_log.start()
        await self.hub.start()

    async def aclose(self) -> None:
        await self.hub.aclose()
        await self.event_log.aclose()
        if self.telegram is not None:
            await self.telegram.aclose()


async def _empty() -> list[tuple[str, str]]:
    return []
