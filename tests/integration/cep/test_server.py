"""The CEP server with a real database and bus: tools, live matching, and timers that survive a
restart of the process that armed them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from servers.cep.server import build, runtime_of
from tests.integration.databases import copy_migrated
from tests.mcp_calls import connected
from tests.polling import eventually
from vsm_mcp.bus import Bus, Event, MemoryBus
from vsm_mcp.config import load_settings
from vsm_mcp.context import ServerContext

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Node:
    def __init__(self, ctx: ServerContext, client: Client) -> None:
        self.ctx, self.client = ctx, client

    async def call(self, tool: str, **args: Any) -> dict[str, Any]:
        res = await self.client.call_tool(tool, args)
        if res.is_error:
            raise AssertionError(res.content[0].text)  # type: ignore[union-attr]
        assert isinstance(res.structured_content, dict)
        out = res.structured_content.get("result", res.structured_content)
        assert isinstance(out, dict)
        return out

    async def error(self, tool: str, **args: Any) -> str:
        res = await self.client.call_tool(tool, args)
        assert res.is_error
        return str(res.content[0].text)  # type: ignore[union-attr]


@pytest.fixture
def make_node(tmp_path: Path, migrated_sqlite: Path) -> Callable[..., Any]:
    home = copy_migrated(migrated_sqlite, tmp_path / "home")

    @asynccontextmanager
    async def factory(bus: Bus) -> AsyncIterator[Node]:
        async with connected(build, load_settings(home=home), bus) as (ctx, client):
            yield Node(ctx, client)

    return factory


async def test_rule_tools_and_live_matching(make_node: Callable[..., Any]) -> None:
    bus = MemoryBus()
    async with make_node(bus) as node:
        tenant = await node.ctx.default_tenant_id()
        put = await node.call("cep_rule_put", name="burst", rule='count(tool.failed[data.server == "x"]) >= 3 within 1m')
        assert put["version"] and put["rule"].startswith("count(")
        assert "rule error at column 12" in await node.error("cep_rule_put", name="bad", rule="a.b -> c.d withn 5m")
        assert "rule name" in await node.error("cep_rule_put", name="a.b", rule="a")
        listed = await node.call("cep_rule_list")
        assert [r["name"] for r in listed["rules"]] == ["burst"]

        matches = await bus.subscribe(["cep.match.#"])
        for server in ("x", "y", "x", "x"):
            await bus.publish(Event(topic="tool.failed", tenant=tenant, data={"server": server}))
        with anyio.fail_after(10):
            async for m in matches:
                assert m.topic == "cep.match.burst" and m.tenant == tenant and m.data["value"] == 3.0
                break
        # Another tenant's events never reach this tenant's rules.
        await bus.publish(Event(topic="tool.failed", tenant="other", data={"server": "x"}))
        assert (await node.call("cep_rule_delete", name="burst")) == {"deleted": "burst"}
        assert "not_found" in await node.error("cep_rule_delete", name="burst")
        await matches.aclose()


async def test_rule_test_tool_runs_a_rule_over_given_events(make_node: Callable[..., Any]) -> None:
    async with make_node(MemoryBus()) as node:
        events = [{"topic": "plan.started", "data": {"plan": "p1"}, "time": 100},
                  {"topic": "plan.started", "data": {"plan": "p2"}, "time": 101},
                  {"topic": "plan.finished", "data": {"plan": "p2"}, "time": 102}]
        out = await node.call("cep_rule_test", rule="plan.started -> not plan.finished for 10s by data.plan",
                              events=events, until=200)
        assert out["count"] == 1
        assert out["matches"][0]["key"] == ["p1"] and out["matches"][0]["time"] == 110.0
        assert out["matches"][0]["events"] == ["e0"]
        assert "events[1].time" in await node.error("cep_rule_test", rule="a", events=[{"topic": "a"}, {"topic": "a", "time": "soon"}])


async def test_absence_armed_before_a_restart_fires_after_it_at_its_deadline(make_node: Callable[..., Any]) -> None:
    rule = "job.started -> not job.finished for 1500ms by data.job"
    async with make_node(MemoryBus()) as first:
        tenant = await first.ctx.default_tenant_id()
        await first.call("cep_rule_put", name="stuck", rule=rule)
        runtime = runtime_of(first.ctx)
        started = Event(topic="job.started", tenant=tenant, data={"job": "j1"})
        await first.ctx.bus.publish(started)
        await first.ctx.bus.publish(Event(topic="job.started", tenant=tenant, data={"job": "j2"}))
        await first.ctx.bus.publish(Event(topic="job.finished", tenant=tenant, data={"job": "j2"}))
        await runtime.drain()
        assert runtime.matched == 0
        store = runtime.store
        assert store is not None
        await eventually(lambda: store.timers(tenant))  # written behind, within the flush interval
    # The process is gone; its deadline is in the database only.
    deadline = started.time.timestamp() + 1.5
    assert time.time() < deadline, "the restart must happen before the deadline for this test to mean anything"

    bus = MemoryBus()
    matches = await bus.subscribe(["cep.match.#"])
    async with make_node(bus) as second:
        with anyio.fail_after(15):
            m = await anext(aiter(matches))
        arrived = time.time()
        assert m.data["key"] == ["j1"] and m.data["kind"] == "absence" and m.data["timer"] is True
        assert m.data["time"] == deadline  # the deadline armed before the restart, not restart + 1.5 s
        assert arrived >= deadline
        assert m.data["events"][0]["id"] == started.id
        await runtime_of(second.ctx).drain()
        assert runtime_of(second.ctx).matched == 1  # j2 was answered in time: it never fires
        store2 = runtime_of(second.ctx).store
        assert store2 is not None

        async def disarmed() -> bool:
            return not await store2.timers(tenant)

        await eventually(disarmed)  # the fired timer's row goes too (written behind)
    await matches.aclose()
