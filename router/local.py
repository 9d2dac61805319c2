"""The router without HTTP: ``vsm-mcp stdio`` (the aggregate over stdin/stdout, for clients
that launch a local command) and ``vsm-mcp call`` (one call in-process, a smoke path).

Both run as the local user, so the principal is the anonymous default-tenant one when
``VSM_ALLOW_ANONYMOUS`` is on (no loopback check: there is no network), or the API key in
``VSM_API_KEY`` when that is set. stdout carries the protocol in stdio mode: everything
else (logs, migrations) goes to stderr.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp.types as mt
from mcp.server.stdio import stdio_server

from router.aggregate import Aggregate
from router.meta_tools import install_meta_tools
from router.runtime import RouterRuntime
from router.upstreams.manifest import UpstreamSpec
from router.upstreams.upstream import leaf
from vsm_mcp.auth import Principal
from vsm_mcp.config import Settings
from vsm_mcp.context import ServerContext
from vsm_mcp.durable import serve_queues
from vsm_mcp.errors import VsmError
from vsm_mcp.keys import Authenticator
from vsm_mcp.policy.service import authorizer_of


async def local_principal(ctx: ServerContext) -> Principal:
    key = os.environ.get("VSM_API_KEY", "")
    auth = Authenticator(ctx.db, default_tenant=ctx.settings.default_tenant, allow_anonymous=ctx.settings.allow_anonymous)
    return await auth.authenticate(f"Bearer {key}" if key else None)


@asynccontextmanager
async def running_router(
    settings: Settings, specs: list[UpstreamSpec] | None = None, *,
    durable_role: str | None = None, durable_queues: list[str] | None = None,
) -> AsyncIterator[tuple[RouterRuntime, Principal]]:
    """A started RouterRuntime (upstreams connected or given up on) and the local principal;
    with ``durable_role`` also the durable spine (stdio, worker)."""
    ctx = ServerContext.create(settings)
    await ctx.bus.start()
    try:
        runtime = RouterRuntime(ctx, specs, durable_role=durable_role, durable_queues=durable_queues)
        # Same authorize step as the HTTP app: tenant policies apply to stdio and `call` too.
        policy = authorizer_of(ctx)
        runtime.dispatcher.add_authorizer(policy)
        principal = await local_principal(ctx)
        try:
            await policy.start()
            async with anyio.create_task_group() as tg:
                await runtime.start(tg)
                try:
                    yield runtime, principal
                finally:
                    await runtime.aclose()
                    await policy.aclose()
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # A routing error (unknown tool …) surfaces as itself, not wrapped by the task group.
            err = leaf(group)
            if isinstance(err, VsmError):
                raise err from None
            raise
    finally:
        await ctx.aclose()


async def serve_stdio(settings: Settings, specs: list[UpstreamSpec] | None = None) -> None:
    """Serve the aggregate on stdin/stdout until stdin closes (durable work runs here too)."""
    queues = serve_queues(settings)
    async with running_router(settings, specs, durable_role="stdio", durable_queues=queues) as (runtime, principal):

        async def principal_of(_ctx: Any) -> Principal:
            return principal

        aggregate = Aggregate(runtime.catalog, runtime.dispatcher, principal_of, expose=settings.expose, source="stdio")
        install_meta_tools(aggregate, runtime.tool_search, runtime.dispatcher)
        async with stdio_server() as (read, write):
            await aggregate.server.run(read, write, aggregate.server.create_initialization_options())


async def call_once(settings: Settings, tool: str, arguments: dict[str, Any]) -> mt.CallToolResult:
    """Run one tool call through the full pipeline in-process."""
    async with running_router(settings) as (runtime, principal):
        return await runtime.dispatcher.call_tool(principal, tool, arguments, source="cli")


def result_json(result: mt.CallToolResult) -> str:
    return json.dumps(result.model_dump(by_alias=True, mode="json", exclude_none=True), indent=2)
