"""Pure-ASGI rate limiting for edge endpoints: a token bucket per principal, else per client IP.

The key is the presented credential (hashed — the middleware runs before authentication and
must not cost a database round trip) or, without one, the client address. A rejected request
gets 429 with ``Retry-After`` (whole seconds, rounded up) and the one JSON error shape. The
buckets are ``vsm_mcp.resilience.RateLimiter`` (the same token bucket the dispatcher uses).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vsm_mcp.errors import RateLimited
from vsm_mcp.resilience import RateLimiter
from vsm_mcp.telemetry import Metrics


def client_key(scope: Scope) -> str:
    """``key:<digest>`` for a caller presenting credentials, ``ip:<address>`` otherwise."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and value:
            return "key:" + hashlib.sha256(value).hexdigest()[:24]
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


def retry_after_header(seconds: float) -> str:
    return str(max(1, int(seconds + 0.999)))


ErrorBody = Callable[[RateLimited], dict[str, Any]]


async def send_rate_limited(send: Send, exc: RateLimited, render: ErrorBody | None = None) -> None:
    body = json.dumps(render(exc) if render is not None else exc.to_http()).encode()
    await send({
        "type": "http.response.start",
        "status": 429,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", retry_after_header(exc.retry_after).encode()),
        ],
    })
    await send({"type": "http.response.body", "body": body})


class RateLimitMiddleware:
    """Wrap an ASGI app; HTTP requests over the limit get 429 + Retry-After.

    ``render`` shapes the JSON body for routes whose clients expect another error format
    (the OpenAI-compatible routes answer in OpenAI's shape)."""

    def __init__(
        self, app: ASGIApp, *, rate: float, burst: float, metrics: Metrics | None = None, where: str = "edge",
        render: ErrorBody | None = None,
    ) -> None:
        self.app = app
        self.limiter = RateLimiter(rate, burst)
        self.metrics = metrics
        self.where = where
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = client_key(scope)
        try:
            self.limiter.take(key, "this client" if key.startswith("key:") else f"address {key[3:]}")
        except RateLimited as exc:
            if self.metrics is not None:
                self.metrics.rate_limited.labels(self.where).inc()
            await send_rate_limited(send, exc, self.render)
            return
        await self.app(scope, receive, send)


def limit_routes(routes: list[Route], limited: Callable[[ASGIApp], ASGIApp]) -> list[Route]:
    """Put each route's ASGI app behind ``limited`` (e.g. ``Edge.limited``), in place.

    Routes built by other modules from plain request handlers get the limit without those
    modules knowing about it; methods, path parameters and names stay as they were.
    """
    for route in routes:
        route.app = limited(route.app)
    return routes
