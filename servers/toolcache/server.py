"""The cache server: ``cache_purge`` and ``cache_stats`` for the router's tool-result cache.

The router puts its cache in ``ctx.extras["tool_cache"]`` (a ``vsm_mcp.hooks.CacheControl``);
this server never imports the router. A purge is scoped to the caller's tenant — there is no
argument that names another tenant — and reaches every replica (the cache announces it on the
bus).
"""

from __future__ import annotations

from typing import Any, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

from servers.tool_errors import tool_errors
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import InvalidArguments, UpstreamUnavailable
from vsm_mcp.hooks import TOOL_CACHE_KEY, CacheControl


def build(ctx: ServerContext) -> MCPServer:
    server = MCPServer("cache", instructions="Control of the router's tool-result cache (per tenant).")

    def cache() -> CacheControl:
        found = ctx.extras.get(TOOL_CACHE_KEY)
        if found is None:
            raise UpstreamUnavailable("the tool-result cache is off (VSM_TOOL_CACHE=false) or there is no router")
        return cast(CacheControl, found)

    @server.tool(title="Purge the tool-result cache (clear cached tool call results)", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True))
    @tool_errors
    async def cache_purge(mcp_ctx: Context, server: str | None = None) -> dict[str, Any]:
        """Forget the calling tenant's cached tool results — all of them, or only those of upstream
        ``server``. The next call of each tool reaches its upstream."""
        if server is not None and (not server or "__" in server or len(server) > 48):
            raise InvalidArguments("server: an upstream's name as in its manifest (e.g. 'search')")
        tenant = await ctx.tenant_of(mcp_ctx)
        await cache().purge(tenant, server)
        return {"purged": True, "tenant": tenant, "server": server}

    @server.tool(title="Tool-result cache statistics (hits, misses, hit rate)", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=False))
    @tool_errors
    async def cache_stats() -> dict[str, Any]:
        """Counters of the router's tool-result cache (this replica): hits, misses, shared waits,
        upstream calls, stores, evictions, entries."""
        return cache().stats()

    return server
