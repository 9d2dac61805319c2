"""Step 1 of the pipeline for HTTP callers: ``Authorization: Bearer vsm_…`` → ``Principal``.

``make_authenticator`` builds the app's one ``vsm_mcp.keys.Authenticator`` (keys cached per
replica, dropped at once when a revocation arrives over the bus). The gate (router/gate/gate.py)
calls it for every gated request, saying whether the peer may be anonymous, and stores the
principal in ``scope["state"]["principal"]``; ``principal_of(scope)`` reads it back.
"""

from __future__ import annotations

from starlette.types import Send

from router.gate.gate import send_error as _send
from router.gate.route import JSONRPC, principal_of
from vsm_mcp.bus import Bus
from vsm_mcp.config import Settings
from vsm_mcp.db import Database
from vsm_mcp.errors import VsmError
from vsm_mcp.keys import Authenticator

__all__ = ["make_authenticator", "principal_of", "send_error"]


def make_authenticator(settings: Settings, db: Database, bus: Bus | None = None) -> Authenticator:
    """Anonymous callers (where the gate allows them) get the default tenant and ``VSM_ANONYMOUS_SCOPES``."""
    return Authenticator(
        db, default_tenant=settings.default_tenant, allow_anonymous=settings.allow_anonymous,
        anonymous_scopes=settings.anonymous_scopes, bus=bus,
    )


async def send_error(send: Send, exc: VsmError, *, jsonrpc: bool = False) -> None:
    """One error response: the HTTP error shape, or a JSON-RPC error object for MCP endpoints."""
    await _send(send, exc, JSONRPC if jsonrpc else None)
