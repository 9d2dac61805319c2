"""Two router replicas on PostgreSQL + RabbitMQ share one upstream registry (issue 27): an add on A
is callable on B (the bus notification alone: the registry poll is off), and concurrent,
conflicting updates on A and B end in the same state on both."""

from __future__ import annotations

import asyncio
import time

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from router.upstreams.definitions import GLOBAL
from tests.conftest import RABBITMQ_URL
from tests.integration.router.conftest import serve_router, stdio_entry
from tests.polling import eventually
from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database
from vsm_mcp.tenants import ensure_tenant

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


async def test_add_on_a_is_callable_on_b_and_concurrent_updates_converge(pg_owner_url: str, pg_app_url: str) -> None:
    await anyio.to_thread.run_sync(migrate.upgrade, pg_owner_url)
    owner = Database(load_settings(), pg_owner_url)  # tenants are created by the owner, as the CLI does
    await ensure_tenant(owner, "default")
    await owner.aclose()
    common = {
        "database_url": pg_app_url, "migration_database_url": pg_owner_url, "bus_url": RABBITMQ_URL,
        "embedder": "hash", "upstreams_poll_s": 0,
    }
    async with serve_router([stdio_entry("s")], **common) as (_base_a, app_a), \
            serve_router([stdio_entry("s")], **common) as (base_b, app_b):
        a, b = app_a.state.runtime, app_b.state.runtime
        async with Client(f"{base_b}/mcp", mode="legacy") as on_b:
            started = time.monotonic()
            await a.live.admin.add(GLOBAL, stdio_entry("x"))
            mounted = None
            while True:
                if mounted is None and "x" in b.upstreams:
                    mounted = time.monotonic() - started  # replication done; the rest is starting the process
                try:
                    if (await on_b.call_tool("x__add", {"a": 2, "b": 2})).structured_content == {"result": 4}:
                        break
                except MCPError:
                    pass
                assert time.monotonic() - started < 60, "never callable on replica B"
                await asyncio.sleep(0.02)
            print(f"\nadd on A -> mounted on B in {mounted:.2f}s, callable on B in {time.monotonic() - started:.2f}s")

            # Conflicting updates at the same moment on both replicas: same field (timeout), and
            # one field each. Both end with the same definition; neither side's own field is lost.
            await asyncio.gather(
                a.live.admin.update(GLOBAL, "x", {"timeout": 5, "tags": ["one"]}),
                b.live.admin.update(GLOBAL, "x", {"timeout": 7, "pool_size": 2}),
            )

            def converged() -> bool:
                ua, ub = a.upstreams.get("x"), b.upstreams.get("x")
                return ua is not None and ub is not None and ua.spec == ub.spec and a.live.state.view() == b.live.state.view()

            await eventually(converged, 60, "both replicas to converge")
            spec = a.upstreams["x"].spec
            assert spec.pool_size == 2 and spec.tags == ["one"] and spec.timeout in (5, 7)
            await eventually(lambda: b.catalog.get("x__add") is not None, 60, "x to come back on B")

            # Concurrent remove (A) and disable (B): one wins everywhere — gone, or disabled.
            results = await asyncio.gather(
                a.live.admin.remove(GLOBAL, "x"), b.live.admin.set_enabled(GLOBAL, "x", False), return_exceptions=True
            )
            assert any(not isinstance(r, BaseException) for r in results)
            await eventually(lambda: a.live.state.view() == b.live.state.view(), 60, "convergence after remove/disable")
            await eventually(
                lambda: (a.upstreams.get("x") is None) == (b.upstreams.get("x") is None)
                and a.catalog.get("x__add") is None and b.catalog.get("x__add") is None,
                60, "x's tools gone on both",
            )
