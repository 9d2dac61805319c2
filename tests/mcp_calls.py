"""Calling a capability server's tool as a tenant, the way the router does (tenant in ``_meta``),
and a server connected to an in-process MCP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from mcp import Client

from vsm_mcp.bus import Bus
from vsm_mcp.config import Settings
from vsm_mcp.context import TENANT_META_KEY, ServerContext
from vsm_mcp.db import Database


@asynccontextmanager
async def connected(build: Callable[[ServerContext], Any], settings: Settings,
                    bus: Bus) -> AsyncIterator[tuple[ServerContext, Client]]:
    """``build(ctx)`` on a database of its own and ``bus``, with an in-process MCP client; the
    database is closed after the client."""
    ctx = ServerContext(settings=settings, db=Database(settings), bus=bus)
    try:
        async with Client(build(ctx)) as client:
            yield ctx, client
    finally:
        await ctx.db.aclose()


async def call(c: Client, tenant: str, tool: str, **args: Any) -> dict[str, Any]:
    """The tool's structured result; the call must succeed."""
    res = await c.call_tool(tool, args, meta={TENANT_META_KEY: tenant})
    assert not res.is_error, res.content
    assert res.structured_content is not None
    return res.structured_content


async def error_text(c: Client, tenant: str, tool: str, **args: Any) -> str:
    """The text of the tool error; the call must fail as a tool error."""
    res = await c.call_tool(tool, args, meta={TENANT_META_KEY: tenant})
    assert res.is_error
    return " ".join(getattr(x, "text", "") for x in res.content)
