"""The dispatch pipeline against in-process builtin upstreams (the mcp SDK's memory transport)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlmodel import select

from router.registry.catalog import ToolEntry
from router.runtime import RouterRuntime
from tests.router_runtime import started_runtime
from vsm_mcp.auth import Principal
from vsm_mcp.config import load_settings
from vsm_mcp.errors import (
    Forbidden,
    InvalidArguments,
    NotFound,
    PolicyDenied,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from vsm_mcp.hooks import CallInfo, CallOutcome
from vsm_mcp.models import Episode
from vsm_mcp.tenants import ensure_tenant

pytestmark = pytest.mark.anyio
TARGET = "tests.integration.router.upstream_server:build_builtin"


@asynccontextmanager
async def running(entries: list[dict[str, Any]], **settings: Any) -> AsyncIterator[tuple[RouterRuntime, Principal]]:
    async with started_runtime(load_settings(**{"rate_limit": 0, **settings}), entries) as rt:
        tenant = await ensure_tenant(rt.ctx.db, "acme")
        yield rt, Principal(tenant_id=tenant.id, scopes=frozenset({"*"}), key_id="k1")


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[CallInfo, CallOutcome]] = []

    async def observe(self, call: CallInfo, outcome: CallOutcome) -> None:
        self.seen.append((call, outcome))


async def test_pipeline_outcomes_and_episodes() -> None:
    obs = Recorder()
    async with running([{"name": "b", "kind": "builtin", "target": TARGET, "tags": ["tools"]}]) as (rt, p):
        rt.dispatcher.add_observer(obs)
        d = rt.dispatcher
        ok = await d.call_tool(p, "b__add", {"a": 2, "b": 3})
        assert not ok.is_error and ok.structured_content == {"result": 5}
        who = await d.call_tool(p, "b__whoami", {})
        assert who.content[0].text == p.tenant_id  # type: ignore[union-attr]
        failed = await d.call_tool(p, "b__fail", {"message": "nope"})
        assert failed.is_error
        with pytest.raises(NotFound, match="unknown tool 'b__missing'"):
            await d.call_tool(p, "b__missing", {})
        with pytest.raises(InvalidArguments) as bad:
            await d.call_tool(p, "b__add", {"a": "two", "b": 3})
        assert bad.value.data["field"] == "a" and "'a'" in bad.value.message
        with pytest.raises(InvalidArguments) as missing:
            await d.call_tool(p, "b__add", {"a": 1})
        assert missing.value.data["field"] == "b"
        await rt.recorder.aclose()  # flush
        assert [o.outcome for _, o in obs.seen] == [
            "ok", "ok", "tool_error", "not_found", "invalid_arguments", "invalid_arguments"
        ]
        async with rt.ctx.db.tenant(p.tenant_id) as s:
            rows = (await s.execute(select(Episode))).scalars().all()
        assert sorted(r.outcome for r in rows) == sorted(o.outcome for _, o in obs.seen)
        assert {r.principal_id for r in rows} == {"k1"}


async def test_grants_authorizers_and_rate_limits() -> None:
    entries = [{"name": "b", "kind": "builtin", "target": TARGET, "tags": ["storage"], "rate_limit": 1}]
    async with running(entries) as (rt, p):
        d = rt.dispatcher
        reader = Principal(tenant_id=p.tenant_id, scopes=frozenset({"tools:call"}))
        with pytest.raises(Forbidden, match="^an anonymous caller may not call 'b__echo': it needs scope.*keys create"):
            await d.call_tool(reader, "b__echo", {"text": "x"})
        keyed = Principal(tenant_id=p.tenant_id, scopes=frozenset({"tools:call"}), key_id="k1")
        with pytest.raises(Forbidden, match=r"^the API key may not call 'b__echo': it needs scope\(s\) storage$"):
            await d.call_tool(keyed, "b__echo", {"text": "x"})
        ok = Principal(tenant_id=p.tenant_id, scopes=frozenset({"storage:*"}), key_id="k2")
        await d.call_tool(ok, "b__echo", {"text": "x"})
        with pytest.raises(RateLimited) as limited:
            await d.call_tool(ok, "b__echo", {"text": "x"})  # 1/s per tool
        assert limited.value.retry_after > 0

        class Deny:
            async def authorize(self, call: CallInfo) -> None:
                if call.tool == "add":
                    raise PolicyDenied("rule no-add denies add")

        d.add_authorizer(Deny())
        with pytest.raises(PolicyDenied, match="no-add"):
            await d.call_tool(p, "b__add", {"a": 1, "b": 2})


async def test_principal_rate_limit() -> None:
    async with running([{"name": "b", "kind": "builtin", "target": TARGET}], rate_limit=1, rate_burst=2) as (rt, p):
        await rt.dispatcher.call_tool(p, "b__add", {"a": 1, "b": 2})
        await rt.dispatcher.call_tool(p, "b__add", {"a": 1, "b": 2})
        with pytest.raises(RateLimited, match="API key k1 of tenant"):
            await rt.dispatcher.call_tool(p, "b__add", {"a": 1, "b": 2})


async def test_cache_hook_is_used_for_cacheable_tools_only() -> None:
    class Cache:
        def __init__(self) -> None:
            self.keys: list[str] = []

        async def get_or_call(self, call: CallInfo, invoke: Callable[[], Awaitable[Any]]) -> tuple[Any, bool]:
            self.keys.append(call.public_name)
            return await invoke(), False

    cache = Cache()
    async with running([{"name": "b", "kind": "builtin", "target": TARGET, "cacheable": {"add": True}}]) as (rt, p):
        rt.dispatcher.set_cache(cache)
        await rt.dispatcher.call_tool(p, "b__echo", {"text": "x"})  # readOnly + idempotent
        await rt.dispatcher.call_tool(p, "b__add", {"a": 1, "b": 2})  # manifest override
        await rt.dispatcher.call_tool(p, "b__pid", {})  # neither
        assert cache.keys == ["b__echo", "b__add"]


async def test_timeout_and_unavailable_and_catalog_listener() -> None:
    changes: list[tuple[str, list[ToolEntry]]] = []

    class Listener:
        def on_change(self, server: str, tools: list[ToolEntry]) -> None:
            changes.append((server, tools))

    entries = [
        {"name": "b", "kind": "builtin", "target": TARGET, "timeout": 0.3},
        {"name": "broken", "kind": "builtin", "target": "no.such.module:build"},
    ]
    async with running(entries) as (rt, p):
        rt.catalog.add_listener(Listener())
        with pytest.raises(UpstreamTimeout, match="within 0.3s"):
            await rt.dispatcher.call_tool(p, "b__slow", {"seconds": 5})
        status = rt.readiness()
        assert not status["ok"] and status["upstreams"]["broken"]["state"] == "failed"
        assert "no.such.module" in status["upstreams"]["broken"]["error"]
        entry = rt.catalog.resolve("b__echo")
        assert entry.cacheable and entry.available and entry.schema_hash
        rt.catalog.set_available("b", False)
        assert changes and changes[-1][0] == "b" and not changes[-1][1][0].available
        rt.upstreams["b"]._conns[0].client = None  # the session is gone
        with pytest.raises(UpstreamUnavailable, match="upstream 'b'"):
            await rt.dispatcher.call_tool(p, "b__add", {"a": 1, "b": 2})
