"""Put a Starlette app of edge routes behind a gate the way router/app.py does, for tests that
build part of the edge on its own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette

from router.gate.gate import build_gate
from vsm_mcp.auth import Principal
from vsm_mcp.config import Settings, load_settings
from vsm_mcp.keys import Authenticator


def gated(app: Starlette, authenticate: Authenticator | Callable[[str | None], Awaitable[Principal]],
          settings: Settings | None = None, **kwargs: Any) -> Starlette:
    """``app`` with ``app.state.gate`` set; ``authenticate`` is an Authenticator or a function of
    the Authorization header (anonymous callers are then its business)."""
    if isinstance(authenticate, Authenticator):
        auth = authenticate.authenticate
    else:
        fn = authenticate

        async def auth(authorization: str | None, *, anonymous: bool = True) -> Principal:
            return await fn(authorization)

    app.state.gate = build_gate(settings or load_settings(), auth, **kwargs)  # type: ignore[arg-type]
    return app


async def admin_key(db: Any, tenant: str = "default", scopes: tuple[str, ...] = ("*",)) -> str:
    """A key for ``tenant`` (created if missing), for tests that do admin work the anonymous
    caller may not (bucket_create, policies)."""
    from vsm_mcp.keys import create_key
    from vsm_mcp.tenants import ensure_tenant

    await ensure_tenant(db, tenant)
    return (await create_key(db, tenant, list(scopes)))[0]


def keyed_mcp(url: str, key: str) -> Any:
    """A streamable-HTTP transport for ``mcp.Client`` that sends ``Authorization: Bearer key``."""
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    return streamable_http_client(url, http_client=create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}))
