"""A builtin upstream for the tool-cache tests: it counts the calls that reach it."""

from __future__ import annotations

import asyncio

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

from vsm_mcp.context import ServerContext

CALLS: dict[str, int] = {}


def build(_ctx: ServerContext) -> MCPServer:
    server = MCPServer("cache-upstream")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    async def lookup(q: str, ctx: Context) -> str:
        """A slow, deterministic lookup (slow, so identical calls overlap)."""
        tenant = str((ctx.request_context.meta or {}).get("io.vsm/tenant", ""))
        CALLS[q] = CALLS.get(q, 0) + 1
        await asyncio.sleep(0.05)
        return f"{tenant}:{q}"

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    def broken(q: str) -> str:
        """Always a tool error (never cached)."""
        CALLS["broken"] = CALLS.get("broken", 0) + 1
        raise ValueError(f"no {q}")

    return server
