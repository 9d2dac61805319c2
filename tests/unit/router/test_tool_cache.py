"""The tool-result cache (router/tool_cache.py) in the dispatch pipeline, with real backends:
diskcache under a temp home, and the machine's Redis."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp.types as mt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.runtime import RouterRuntime
from router.tool_cache import DiskBackend, RedisBackend, ToolCache
from tests.router_runtime import started_runtime
from tests.unit.router import cache_upstream
from vsm_mcp.auth import Principal
from vsm_mcp.bus import MemoryBus
from vsm_mcp.config import load_settings
from vsm_mcp.hooks import CallInfo
from vsm_mcp.tenants import ensure_tenant

pytestmark = pytest.mark.anyio
TARGET = "tests.unit.router.cache_upstream:build"
REDIS_URL = os.environ.get("VSM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ENTRIES: list[dict[str, Any]] = [
    {"name": "c", "kind": "builtin", "target": TARGET, "cache_ttl": {"lookup": 600}},
    {"name": "cache", "kind": "builtin", "target": "servers.toolcache.server:build",
     "tool_tags": {"cache_purge": ["tools:write"]}},
]


@asynccontextmanager
async def running(**opts: Any) -> AsyncIterator[tuple[RouterRuntime, Principal, Principal]]:
    async with started_runtime(load_settings(**{"rate_limit": 0, "tool_cache": True, **opts}), ENTRIES) as rt:
        a = Principal(tenant_id=(await ensure_tenant(rt.ctx.db, "a")).id, scopes=frozenset({"*"}), key_id="ka")
        b = Principal(tenant_id=(await ensure_tenant(rt.ctx.db, "b")).id, scopes=frozenset({"*"}), key_id="kb")
        yield rt, a, b


def text(result: mt.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mt.TextContent)
    return block.text


async def test_100_identical_concurrent_calls_make_one_upstream_call() -> None:
    cache_upstream.CALLS.clear()
    async with running() as (rt, a, _b):
        results = await asyncio.gather(*(rt.dispatcher.call_tool(a, "c__lookup", {"q": "x"}) for _ in range(100)))
        assert cache_upstream.CALLS == {"x": 1}
        assert {text(r) for r in results} == {f"{a.tenant_id}:x"}
        assert rt.tool_cache is not None
        stats = rt.tool_cache.stats()
        assert stats["miss"] == 1 and stats["shared"] + stats["hit"] == 99 and stats["upstream_calls"] == 1
        await rt.dispatcher.call_tool(a, "c__lookup", {"q": "x"})  # later: a plain hit
        assert cache_upstream.CALLS == {"x": 1} and rt.tool_cache.stats()["hit"] >= 1


async def test_schema_change_list_changed_and_purge_reach_the_upstream_again() -> None:
    cache_upstream.CALLS.clear()
    async with running() as (rt, a, b):
        d = rt.dispatcher
        await d.call_tool(a, "c__lookup", {"q": "s"})
        await d.call_tool(a, "c__lookup", {"q": "s"})
        assert cache_upstream.CALLS["s"] == 1
        # The tool's input schema changes (an upstream upgrade): a new schema hash, a new key.
        entry = rt.catalog.resolve("c__lookup")
        changed = entry.tool.model_copy(update={"input_schema": {**entry.input_schema, "description": "v2"}})
        others = [e.tool for e in rt.catalog.tools() if e.server == "c" and e.name != "lookup"]
        rt.catalog.set_server("c", tools=[changed, *others], available=True)
        await d.call_tool(a, "c__lookup", {"q": "s"})
        assert cache_upstream.CALLS["s"] == 2
        # The upstream says its tools changed: nothing of it cached before is served.
        await rt._on_notification("c", mt.ToolListChangedNotification(method="notifications/tools/list_changed"))
        await d.call_tool(a, "c__lookup", {"q": "s"})
        assert cache_upstream.CALLS["s"] == 3
        # cache_purge through the pipeline, for the caller's tenant only.
        await d.call_tool(b, "c__lookup", {"q": "s"})
        assert cache_upstream.CALLS["s"] == 4  # b has its own entry
        purged = await d.call_tool(a, "cache__cache_purge", {})
        assert not purged.is_error, text(purged)
        await d.call_tool(a, "c__lookup", {"q": "s"})
        await d.call_tool(b, "c__lookup", {"q": "s"})
        assert cache_upstream.CALLS["s"] == 5  # a's purged, b's still cached


async def test_tool_errors_are_never_cached() -> None:
    cache_upstream.CALLS.clear()
    async with running() as (rt, a, _b):
        for _ in range(3):
            assert (await rt.dispatcher.call_tool(a, "c__broken", {"q": "x"})).is_error
        assert cache_upstream.CALLS["broken"] == 3


async def test_no_cache_no_cache_metrics() -> None:
    async with running(tool_cache=False) as (rt, a, _b):
        assert rt.tool_cache is None and rt.dispatcher.cache is None
        cache_upstream.CALLS.clear()
        await rt.dispatcher.call_tool(a, "c__lookup", {"q": "n"})
        await rt.dispatcher.call_tool(a, "c__lookup", {"q": "n"})
        assert cache_upstream.CALLS["n"] == 2
        purge = await rt.dispatcher.call_tool(a, "cache__cache_purge", {})
        assert purge.is_error and "cache is off" in text(purge)


# --- the cache alone, on each backend ---------------------------------------------------------

def call_info(tenant: str, args: dict[str, Any], server: str = "s", tool: str = "t") -> CallInfo:
    return CallInfo(Principal(tenant_id=tenant), f"{server}__{tool}", server, tool, args, schema_hash="h1")


def answer(tenant: str, args: dict[str, Any]) -> mt.CallToolResult:
    return mt.CallToolResult(content=[mt.TextContent(type="text", text=f"{tenant}|{sorted(args.items())}")])


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(0, 3), st.sampled_from(["call", "call", "call", "purge"])),
                    min_size=1, max_size=30))
def test_one_tenants_entry_is_never_served_to_another(ops: list[tuple[str, int, str]]) -> None:
    async def go() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            cache = ToolCache(DiskBackend(Path(tmp), 64 * 1024 * 1024), lambda _s, _t: 60.0)
            try:
                for tenant, n, op in ops:
                    if op == "purge":
                        await cache.purge(tenant)
                        continue
                    args = {"n": n}
                    calls = [call_info(tenant, args) for _ in range(2)]

                    async def invoke(t: str = tenant, a: dict[str, Any] = args) -> mt.CallToolResult:
                        await asyncio.sleep(0)
                        return answer(t, a)

                    results = await asyncio.gather(*(cache.get_or_call(c, invoke) for c in calls))
                    for result, _cached in results:
                        assert text(result) == text(answer(tenant, args))
            finally:
                await cache.aclose()

    asyncio.run(go())


async def test_disk_entries_survive_a_restart_but_a_purge_stays_purged(tmp_path: Path) -> None:
    upstream = {"n": 0}

    async def invoke() -> mt.CallToolResult:
        upstream["n"] += 1
        return answer("A", {})

    first = ToolCache(DiskBackend(tmp_path, 64 * 1024 * 1024), lambda _s, _t: 60.0)
    await first.get_or_call(call_info("A", {}), invoke)
    await first.aclose()  # waits for the background store
    second = ToolCache(DiskBackend(tmp_path, 64 * 1024 * 1024), lambda _s, _t: 60.0)
    _, cached = await second.get_or_call(call_info("A", {}), invoke)
    assert cached and upstream["n"] == 1  # from disk, after a restart
    await second.purge("A")
    await second.aclose()
    third = ToolCache(DiskBackend(tmp_path, 64 * 1024 * 1024), lambda _s, _t: 60.0)
    _, cached = await third.get_or_call(call_info("A", {}), invoke)
    assert not cached and upstream["n"] == 2  # the purge outlived the restart
    await third.aclose()


async def test_redis_backend_is_shared_and_purges_reach_other_replicas() -> None:
    import redis.asyncio as aioredis

    r = aioredis.from_url(REDIS_URL)
    await r.flushdb()
    await r.aclose()
    bus = MemoryBus()
    one = ToolCache(RedisBackend(REDIS_URL), lambda _s, _t: 60.0, bus=bus)
    two = ToolCache(RedisBackend(REDIS_URL), lambda _s, _t: 60.0, bus=bus)
    await one.start()
    await two.start()
    upstream = {"n": 0}

    async def invoke() -> mt.CallToolResult:
        upstream["n"] += 1
        return answer("A", {"k": 1})

    try:
        await one.get_or_call(call_info("A", {"k": 1}), invoke)
        await asyncio.gather(*one._tasks)  # the store reached Redis
        _, cached = await two.get_or_call(call_info("A", {"k": 1}), invoke)
        assert cached and upstream["n"] == 1  # the other replica's entry
        await one.purge("A")
        for _ in range(500):  # the bus event reaches the other replica
            if two.gens.get("t:A") == one.gens["t:A"]:
                break
            await anyio.sleep(0.01)
        _, cached = await two.get_or_call(call_info("A", {"k": 1}), invoke)
        assert not cached and upstream["n"] == 2
    finally:
        await one.aclose()
        await two.aclose()
