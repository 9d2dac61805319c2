"""The edge, assembled: metrics, event log, SSE hub, Telegram bot and their routes.

``router/app.py`` builds one ``Edge`` per app, appends ``edge.routes()`` to its routes, adds
``edge.observer`` to the dispatcher and runs ``edge.start()`` / ``edge.aclose()`` in its
lifespan. Tests and the benchmark build an ``Edge`` around a bare Starlette app the same way.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from router.edge._auth import Authenticate
from router.edge.health import Readiness, healthz, readyz_endpoint
from router.edge.metrics import CallTelemetry, add_state_collectors, metrics_endpoint
from router.edge.sse import EventsEndpoint, SseHub
from router.edge.telegram import CallTool, ListTools, TelegramBot
from router.gate.ratelimit import ErrorBody, RateLimitMiddleware, limit_routes
from vsm_mcp.auth import Principal, grants
from vsm_mcp.bus.events import EventLog
from vsm_mcp.config import Settings
from vsm_mcp.context import ServerContext
from vsm_mcp.telemetry import Metrics


class _Asgi:
    """Lets Starlette's Route treat an ASGI callable as an app (any method)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


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
        self, settings: Settings, ctx: ServerContext, *, authenticate: Authenticate,
        call_tool: CallTool | None = None, list_tools: ListTools | None = None,
        readiness: Readiness | None = None, metrics: Metrics | None = None,
        guard: Callable[[ASGIApp], ASGIApp] | None = None,
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
        self.guard = guard  # e.g. router.gate.guard.HostOriginGuard: browsers can open /v1/events too
        self.telegram: TelegramBot | None = None
        if call_tool is not None:
            self.telegram = TelegramBot(
                settings, ctx.db, call_tool=call_tool,
                list_tools=list_tools or (lambda _p, _q: _empty()), status=status_text(readiness),
                metrics=self.metrics,
            )

    def limited(self, app: ASGIApp, render: ErrorBody | None = None) -> ASGIApp:
        s = self.settings
        return RateLimitMiddleware(
            app, rate=s.edge_rate_per_s, burst=s.edge_rate_burst, metrics=self.metrics, render=render
        )

    def limit_routes(self, routes: list[Route], render: ErrorBody | None = None) -> list[Route]:
        """Routes built elsewhere (``/v1/tools``, ``/v1/storage``, the OpenAI-compatible ``/v1``)
        behind the edge rate limit; ``render`` shapes the 429 body for clients of another API."""
        return limit_routes(routes, lambda app: self.limited(app, render))

    def routes(self, *, health: bool = True) -> list[BaseRoute]:
        """The edge routes; ``health=False`` leaves /healthz and /readyz to the caller."""
        routes: list[BaseRoute] = [
            Route("/v1/events", _Asgi(self.limited(self.guard(self.events) if self.guard else self.events)),
                  methods=["GET"]),
            Route("/metrics", _Asgi(self.limited(_handler(metrics_endpoint(self.metrics)))), methods=["GET"]),
        ]
        if self.telegram is not None:
            routes.append(
                Route("/v1/telegram/webhook", _Asgi(self.limited(_handler(self.telegram.handle))), methods=["POST"])
            )
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


def _handler(fn: Callable[[Any], Awaitable[Any]]) -> ASGIApp:
    """A Starlette request handler as a plain ASGI app."""
    from starlette.requests import Request

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await fn(Request(scope, receive))
        await response(scope, receive, send)

    return app
