"""Per-route HTTP metrics: ``vsm_http_requests_total{route,method,status}`` and
``vsm_http_request_duration_seconds{route,method}``.

Pure ASGI around the whole app. The route label is the matched route's *template*
(``/v1/tools/{name}/call``, ``/mcp/{server}``), read from ``scope["route"]`` that Starlette's
router sets, never the raw path — one label per route, not one per object key or tool name.
Unmatched paths share ``<unmatched>``. The ``/mcp`` fast lane bypasses Starlette's router
(router/app.py ``_RouterApp``), so it is wrapped with a fixed route instead.

Cost: label children are cached per (route, method, status), so a request pays two dict
lookups and two prometheus updates (~2 µs), not a label resolution.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vsm_mcp.telemetry import Metrics

UNMATCHED = "<unmatched>"


def route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class RouteMetrics:
    """Wrap an ASGI app; see the module docstring. ``route`` fixes the label (fast lanes)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, *, route: str | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.route = route
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _child(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        key = (route, method, status)
        c = self._children.get(key)
        if c is None:
            if len(self._children) > 10_000:  # bounded even if something mints routes
                self._children.clear()
            c = self._children[key] = (
                self.metrics.http_requests.labels(route, method, str(status)),
                self.metrics.http_latency.labels(route, method),
            )
        return c

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before starting a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            counter, latency = self._child(self.route or route_of(scope), scope.get("method", "GET"), status)
            counter.inc()
            latency.observe(time.perf_counter() - started)
