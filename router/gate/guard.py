"""DNS-rebinding protection for loopback binds (pure ASGI).

A web page on some other site can make the browser send requests to ``127.0.0.1`` with a
hostile ``Host`` (via DNS rebinding) or ``Origin``. While the router is bound to a loopback
address, ``HostOriginGuard`` accepts only loopback ``Host`` values and, when an ``Origin``
header is present, only loopback origins; anything else gets 403 with a JSON-RPC error body.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from router.gate.authn import send_error
from vsm_mcp.errors import Forbidden

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _host_only(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host: str | None, extra: frozenset[str] = frozenset()) -> bool:
    if not host:
        return False
    h = _host_only(host)
    return h in LOOPBACK_HOSTS or h in extra


def origin_allowed(origin: str | None, extra: frozenset[str] = frozenset()) -> bool:
    if origin is None:
        return True  # non-browser clients send no Origin
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https"):
        return False
    return host_allowed(parts.netloc, extra)


class HostOriginGuard:
    def __init__(self, app: ASGIApp, *, enabled: bool, extra_hosts: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.enabled = enabled
        self.extra = extra_hosts
        self._allowed: set[tuple[bytes | None, bytes | None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.enabled and scope["type"] == "http":
            raw_host = raw_origin = None
            for k, v in scope.get("headers", ()):
                if k == b"host":
                    raw_host = v
                elif k == b"origin":
                    raw_origin = v
            if (raw_host, raw_origin) in self._allowed:  # seen and allowed before: every call repeats them
                await self.app(scope, receive, send)
                return
            host = None if raw_host is None else raw_host.decode("latin-1")
            origin = None if raw_origin is None else raw_origin.decode("latin-1")
            if not host_allowed(host, self.extra):
                await send_error(send, Forbidden(f"Host {host!r} is not allowed on a loopback bind"), jsonrpc=True)
                return
            if not origin_allowed(origin, self.extra):
                await send_error(send, Forbidden(f"Origin {origin!r} is not allowed on a loopback bind"), jsonrpc=True)
                return
            if len(self._allowed) >= 1024:
                self._allowed.clear()
            self._allowed.add((raw_host, raw_origin))
        await self.app(scope, receive, send)
