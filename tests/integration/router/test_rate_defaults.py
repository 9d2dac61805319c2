"""The default rate limits fit an agent's burst (issue 19: 50/s with a burst of 200 rejected 708
of 1,000 calls of a simple 4-way loop), and a rejection names who was limited."""

from __future__ import annotations

import anyio
import pytest

from router.runtime import RouterRuntime
from router.upstreams.manifest import parse_manifest
from vsm_mcp import migrate
from vsm_mcp.auth import Principal
from vsm_mcp.config import load_settings
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import RateLimited

pytestmark = pytest.mark.anyio
TARGET = "tests.integration.router.upstream_server:build_builtin"


async def test_1000_calls_at_concurrency_8_pass_the_defaults() -> None:
    settings = load_settings()  # the defaults, nothing overridden
    await anyio.to_thread.run_sync(migrate.upgrade, settings.migration_database_url)
    ctx = ServerContext.create(settings)
    rt = RouterRuntime(ctx, parse_manifest({"upstreams": [{"name": "b", "kind": "builtin", "target": TARGET}]}, "t"))
    limited = 0
    try:
        async with anyio.create_task_group() as tg:
            await rt.start(tg, wait=30)
            who = Principal(tenant_id="t", scopes=frozenset({"tools:call"}))
            todo = iter(range(1000))

            async def worker() -> None:
                nonlocal limited
                for i in todo:
                    try:
                        await rt.dispatcher.call_tool(who, "b__add", {"a": i, "b": 1})
                    except RateLimited:
                        limited += 1

            async with anyio.create_task_group() as calls:
                for _ in range(8):
                    calls.start_soon(worker)
            # past the burst, the message says who was limited (anonymous, its tenant) and how
            with pytest.raises(RateLimited) as info:
                for i in range(100_000):
                    await rt.dispatcher.call_tool(who, "b__add", {"a": i, "b": 1})
            await rt.aclose()
            tg.cancel_scope.cancel()
    finally:
        await ctx.aclose()
    assert limited == 0
    msg = info.value.message
    assert "API key" not in msg and "anonymous" in msg and "VSM_RATE_LIMIT" in msg, msg
