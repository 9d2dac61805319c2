"""A RouterRuntime started in the test's event loop, the way `vsm-mcp serve` starts one, without
HTTP: for tests that drive the dispatcher directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from router.runtime import RouterRuntime
from router.upstreams.manifest import parse_manifest
from vsm_mcp import migrate
from vsm_mcp.config import Settings
from vsm_mcp.context import ServerContext


@asynccontextmanager
async def started_runtime(settings: Settings, entries: list[dict[str, Any]],
                          wait: float = 30) -> AsyncIterator[RouterRuntime]:
    """The runtime on a migrated database with the manifest ``entries`` started (waiting up to
    ``wait`` seconds for them); closed, with its context, on exit."""
    await anyio.to_thread.run_sync(migrate.upgrade, settings.migration_database_url)
    ctx = ServerContext.create(settings)
    rt = RouterRuntime(ctx, parse_manifest({"upstreams": entries}, "test.yaml"))
    try:
        async with anyio.create_task_group() as tg:
            await rt.start(tg, wait=wait)
            yield rt
            await rt.aclose()
            tg.cancel_scope.cancel()
    finally:
        await ctx.aclose()
