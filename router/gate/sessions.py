"""MCP sessions per principal: each session belongs to the principal that opened it, and one
principal may hold at most ``VSM_MAX_SESSIONS_PER_PRINCIPAL`` open sessions.

The SDK's session manager already refuses a session id presented with another credential than
the one that opened it, and reaps sessions idle for ``session_idle_timeout``
(``VSM_SESSION_IDLE_S``) — it only needs to know who is calling, as ``scope["user"]``. This
wrapper tells it (the gate's principal, as an ``AuthenticatedUser``) and, before a request that
would open a session, counts the principal's open ones; over the cap → 429 naming the principal.

It reads the manager's ``_session_owners`` (mcp 2.x, pinned ``<3`` in pyproject.toml); without
that attribute the cap is not enforced and a warning says so once.
"""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.types import ASGIApp, Receive, Scope, Send

from router.gate.gate import send_error, who
from router.gate.route import JSONRPC, principal_of
from vsm_mcp.auth import Principal
from vsm_mcp.errors import RateLimited

log = logging.getLogger(__name__)


def owner_id(principal: Principal, peer: str) -> str:
    """The identity a session is bound to: the key, or the anonymous peer's address."""
    return f"{principal.tenant_id}/{principal.key_id or 'anon:' + peer}"


class SessionLimit:
    """Wraps the session manager's ASGI entry (``manager.handle_request``)."""

    def __init__(self, app: ASGIApp, manager: Any, cap: int) -> None:
        self.app = app
        self.manager = manager
        self.cap = cap
        self._users: dict[str, AuthenticatedUser] = {}
        self._warned = False

    def user(self, ident: str) -> AuthenticatedUser:
        user = self._users.get(ident)
        if user is None:
            if len(self._users) > 10_000:
                self._users.clear()
            user = self._users[ident] = AuthenticatedUser(AccessToken(token="-", client_id=ident, scopes=[]))
        return user

    def open_sessions(self, ident: str) -> int:
        owners = getattr(self.manager, "_session_owners", None)
        if owners is None:
            if not self._warned:
                log.warning("this mcp SDK has no session owners: VSM_MAX_SESSIONS_PER_PRINCIPAL is not enforced")
                self._warned = True
            return 0
        return sum(1 for o in list(owners.values()) if o.get("client_id") == ident)

    def user_of(self, scope: Scope) -> AuthenticatedUser | None:
        """The SDK's view of the gate's principal (None when the gate set none)."""
        principal = principal_of(scope)
        if principal is None:
            return None
        peer = scope["client"][0] if scope.get("client") else "unknown"
        return self.user(owner_id(principal, peer))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = principal_of(scope)
        if principal is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        user = scope.get("user") or self.user_of(scope)
        scope["user"] = user
        assert user is not None
        ident = user.access_token.client_id
        peer = scope["client"][0] if scope.get("client") else "unknown"
        if self.cap and scope["method"] == "POST" and not any(k == b"mcp-session-id" for k, _ in scope["headers"]):
            n = self.open_sessions(ident)
            if n >= self.cap:
                exc = RateLimited(
                    f"too many open MCP sessions for {who(principal, peer)}: {n} of "
                    f"{self.cap} (VSM_MAX_SESSIONS_PER_PRINCIPAL); end one (DELETE /mcp) or wait for idle ones to expire",
                    retry_after=5.0, data={"limited": who(principal, peer), "sessions": n},
                )
                await send_error(send, exc, JSONRPC)
                return
        await self.app(scope, receive, send)
