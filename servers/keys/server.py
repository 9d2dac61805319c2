"""The keys server: ``keys_list``, ``keys_create``, ``keys_revoke``, ``keys_rotate`` for the calling
tenant — the MCP face of ``vsm-mcp keys`` (vsm_mcp/keys.py does the work for both).

The manifest tags every tool ``admin``, so only a key with scope ``admin`` (or ``*``) gets
through the router's grants; the tenant is always the caller's own (from the router's ``_meta``),
so one tenant's administrator never sees another's keys. A revocation or rotation is announced on
the bus: every replica stops accepting the old key within a second.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

from servers.tool_errors import tool_errors
from vsm_mcp import keys
from vsm_mcp.context import ServerContext

DEFAULT_GRACE = "1h"


def build(ctx: ServerContext) -> MCPServer:
    server = MCPServer("keys", instructions="API keys of the calling tenant: list, create, revoke, rotate.")

    async def tenant(mcp_ctx: Context) -> tuple[str, str]:
        tid = await ctx.tenant_of(mcp_ctx)
        return tid, await keys.tenant_name_of(ctx.db, tid)

    @server.tool(title="List API keys (never their secrets)", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    @tool_errors
    async def keys_list(mcp_ctx: Context) -> dict[str, Any]:
        """The tenant's API keys (never their secrets): id, prefix, scopes, state, created, last used,
        expires, revoked."""
        _tid, name = await tenant(mcp_ctx)
        return {"keys": [k.as_dict() for k in await keys.list_keys(ctx.db, name)]}

    @server.tool(title="Create an API key with scopes", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False))
    @tool_errors
    async def keys_create(
        scopes: list[str], mcp_ctx: Context, name: str = "", expires_in: str | None = None,
    ) -> dict[str, Any]:
        """Create a key for the tenant with ``scopes`` (e.g. ["tools:call", "storage:read"]);
        ``expires_in`` like 90d, 12h. The secret is in the answer once and never again."""
        _tid, tname = await tenant(mcp_ctx)
        ttl = keys.parse_duration(expires_in) if expires_in else None
        secret, info = await keys.create_key(ctx.db, tname, scopes, name=name, expires_in=ttl)
        return {"key": secret, **info.as_dict()}

    @server.tool(title="Revoke an API key at once", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True))
    @tool_errors
    async def keys_revoke(key_id: str, mcp_ctx: Context) -> dict[str, Any]:
        """Revoke key ``key_id`` of the tenant at once, on every replica."""
        tid, _name = await tenant(mcp_ctx)
        return (await keys.revoke_key(ctx.db, key_id, bus=ctx.bus, tenant_id=tid)).as_dict()

    @server.tool(title="Rotate an API key's secret (the old one works for a grace period)", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False))
    @tool_errors
    async def keys_rotate(key_id: str, mcp_ctx: Context, grace: str = DEFAULT_GRACE) -> dict[str, Any]:
        """A new secret for key ``key_id`` (same name and scopes); the old one keeps working for
        ``grace`` (default 1h) so clients can switch. The new secret is shown once."""
        tid, _name = await tenant(mcp_ctx)
        secret, new, old = await keys.rotate_key(ctx.db, key_id, grace=keys.parse_duration(grace), bus=ctx.bus, tenant_id=tid)
        return {"key": secret, "new": new.as_dict(), "old": old.as_dict()}

    return server
