"""Step 1 of the pipeline for HTTP callers: ``Authorization: Bearer vsm_…`` → ``Principal``.

``authenticate(scope, authenticator, settings)`` is the one function every HTTP entry point
uses (MCP endpoints here, REST/SSE/OpenAI routes in router/edge/). ``AuthMiddleware`` wraps an
ASGI app with it and stores the principal in ``scope["state"]["principal"]`` (Starlette's
``request.state.principal``); ``principal_of(scope)`` reads it back. Anonymous callers get the
default tenant only when ``VSM_ALLOW_ANONYMOUS`` is on AND the router is bound to loopback.
API keys are cached by ``vsm_mcp.tenants.Authenticator``: no database round trip per call.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from router.gate.ratelimit import retry_after_header
from vsm_mcp.auth import Principal
from vsm_mcp.config import Settings
from vsm_mcp.errors import Unauthorized, VsmError
from vsm_mcp.tenants import Authenticator

STATE_KEY = "principal"


def make_authenticator(settings: Settings, db: object) -> Authenticator:
    return Authenticator(
        db,  # type: ignore[arg-type]
        default_tenant=settings.default_tenant,
        allow_anonymous=settings.allow_anonymous and settings.is_loopback,
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return str(v.decode("latin-1"))
    return None


async def authenticate(scope: Scope, authenticator: Authenticator) -> Principal:
    """The principal of an HTTP/WebSocket scope, or Unauthorized."""
    return await authenticator.authenticate(_header(scope, b"authorization"))


def principal_of(scope: Scope) -> Principal | None:
    state = scope.get("state")
    if isinstance(state, dict):
        p = state.get(STATE_KEY)
        if isinstance(p, Principal):
            return p
    return None


async def send_error(send: Send, exc: VsmError, *, jsonrpc: bool = False) -> None:
    """One error response: the HTTP error shape, or a JSON-RPC error object for MCP endpoints."""
    if jsonrpc:
        body = json.dumps({"jsonrpc": "2.0", "id": None, "error": exc.to_jsonrpc()}).encode()
    else:
        body = json.dumps(exc.to_http()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if isinstance(exc, Unauthorized):
        headers.append((b"www-authenticate", b'Bearer realm="vsm-mcp"'))
    retry = exc.data.get("retry_after")
    if retry is not None:
        headers.append((b"retry-after", retry_after_header(float(retry)).encode()))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    """Pure-ASGI middleware: authenticate every HTTP request or answer 401."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, *, jsonrpc: bool = True) -> None:
        self.app = app
        self.authenticator = authenticator
        self.jsonrpc = jsonrpc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            principal = await authenticate(scope, self.authenticator)
        except VsmError as exc:
            await send_error(send, exc, jsonrpc=self.jsonrpc)
            return
        scope.setdefault("state", {})[STATE_KEY] = principal
        await self.app(scope, receive, send)
