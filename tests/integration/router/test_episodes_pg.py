"""Episodes written by the dispatch pipeline land on PostgreSQL under row-level security."""

from __future__ import annotations

import anyio
import pytest
from sqlmodel import select

from router.runtime import RouterRuntime
from router.upstreams.manifest import parse_manifest
from vsm_mcp import migrate
from vsm_mcp.auth import Principal
from vsm_mcp.config import load_settings
from vsm_mcp.context import ServerContext
from vsm_mcp.db import Database
from vsm_mcp.models import Episode
from vsm_mcp.tenants import ensure_tenant

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]
TARGET = "tests.integration.router.upstream_server:build_builtin"


async def test_episodes_are_batched_into_the_callers_tenant(pg_owner_url: str, pg_app_url: str) -> None:
    await anyio.to_thread.run_sync(migrate.upgrade, pg_owner_url)
    settings = load_settings(database_url=pg_app_url, migration_database_url=pg_owner_url, rate_limit=0)
    ctx = ServerContext.create(settings)
    try:
        owner = Database(settings, pg_owner_url)  # tenants are created by the owner, as the CLI does
        a = await ensure_tenant(owner, "alpha")
        b = await ensure_tenant(owner, "beta")
        await owner.aclose()
        rt = RouterRuntime(ctx, parse_manifest({"upstreams": [{"name": "b", "kind": "builtin", "target": TARGET}]}, "t"))
        async with anyio.create_task_group() as tg:
            await rt.start(tg, wait=30)
            pa = Principal(tenant_id=a.id, scopes=frozenset({"*"}), key_id="ka")
            for i in range(25):
                await rt.dispatcher.call_tool(pa, "b__add", {"a": i, "b": 1})
            who = await rt.dispatcher.call_tool(pa, "b__whoami", {})
            assert who.content[0].text == a.id  # type: ignore[union-attr]
            await rt.aclose()  # flushes the recorder
            tg.cancel_scope.cancel()
        assert rt.recorder.written == 26 and rt.recorder.dropped == 0
        async with ctx.db.tenant(a.id) as s:
            rows = (await s.execute(select(Episode))).scalars().all()
        assert len(rows) == 26 and {r.tool for r in rows} == {"add", "whoami"}
        async with ctx.db.tenant(b.id) as s:
            assert (await s.execute(select(Episode))).scalars().all() == []
    finally:
        await ctx.aclose()
