"""The beliefs MCP server: tools, durability, replication and anti-entropy (in-process bus)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from servers.beliefs.store import BeliefStore
from tests.integration.beliefs.conftest import ToolFailed, dump
from tests.polling import eventually
from vsm_mcp.bus import MemoryBus

pytestmark = pytest.mark.anyio


async def test_tools_assert_get_query_retract(make_node: Any, bus: MemoryBus) -> None:
    async with make_node("a", bus) as node:
        stored = await node.call(
            "belief_assert", key="env/temp", value={"c": 21.5}, confidence=0.8, source="sensor", evidence=["r1"]
        )
        assert stored["value"] == {"c": 21.5} and stored["node"] == node.service.node
        await node.call("belief_assert", key="env/hum", value=40, confidence=0.3, source="sensor")
        await node.call("belief_assert", key="ops/load", value=[1, 2], confidence=0.9, source="agent")

        got = await node.call("belief_get", key="env/temp")
        assert got["found"] and got["belief"]["evidence"] == ["r1"] and got["concurrent"] == 1

        q = await node.call("belief_query", prefix="env/")
        assert [b["key"] for b in q["beliefs"]] == ["env/hum", "env/temp"]
        q = await node.call("belief_query", min_confidence=0.5)
        assert [b["key"] for b in q["beliefs"]] == ["env/temp", "ops/load"]
        q = await node.call("belief_query", source="agent")
        assert [b["key"] for b in q["beliefs"]] == ["ops/load"]
        q = await node.call("belief_query", limit=1)
        assert len(q["beliefs"]) == 1 and q["truncated"]

        assert (await node.call("belief_retract", key="env/temp"))["retracted"]
        assert not (await node.call("belief_retract", key="env/temp"))["retracted"]
        assert not (await node.call("belief_get", key="env/temp"))["found"]

        stats = await node.call("belief_stats")
        assert stats["size"] == 2 and stats["pending_deltas"] == 0 and stats["replicating"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"key": "", "value": 1}, "key must be 1..512 characters"),
        ({"key": "k", "value": 1, "confidence": 1.5}, "confidence must be between 0 and 1"),
        ({"key": "k", "value": "x" * 70_000}, "the limit is 65536"),
    ],
)
async def test_bad_input_is_a_clear_tool_error(make_node: Any, bus: MemoryBus, args: dict[str, Any], message: str) -> None:
    async with make_node("a", bus) as node:
        with pytest.raises(ToolFailed, match=message):
            await node.call("belief_assert", **args)
        with pytest.raises(ToolFailed, match="limit must be between 1 and 1000"):
            await node.call("belief_query", limit=0)


async def test_tenants_are_isolated(make_node: Any, bus: MemoryBus) -> None:
    async with make_node("a", bus) as a, make_node("b", bus) as b:
        await a.call("belief_assert", tenant="tenant-one", key="secret", value=1)
        await a.call("belief_assert", tenant="tenant-two", key="other", value=2)
        assert not (await a.call("belief_get", tenant="tenant-two", key="secret"))["found"]
        q = await a.call("belief_query", tenant="tenant-two")
        assert [x["key"] for x in q["beliefs"]] == ["other"]
        # Replication keeps the tenants apart too.
        await eventually(lambda: dump(b, "tenant-one") == dump(a, "tenant-one") != "")
        assert [x["key"] for x in (await b.call("belief_query", tenant="tenant-one"))["beliefs"]] == ["secret"]


async def test_two_nodes_converge_after_concurrent_writes(make_node: Any, bus: MemoryBus) -> None:
    async with make_node("a", bus) as a, make_node("b", bus) as b:
        t = "tenant-x"

        async def writes(node: Any, tag: str) -> None:
            for i in range(15):
                await node.call("belief_assert", tenant=t, key=f"k{i % 5}", value=f"{tag}{i}", source=tag)
            await node.call("belief_retract", tenant=t, key="k0")

        await asyncio.gather(writes(a, "a"), writes(b, "b"))
        await eventually(lambda: dump(a, t) == dump(b, t))
        ga = await a.call("belief_get", tenant=t, key="k3")
        gb = await b.call("belief_get", tenant=t, key="k3")
        assert ga == gb and ga["found"]
        assert b.service.node in (await a.call("belief_stats", tenant=t))["peers"]


async def test_a_node_started_later_catches_up_by_anti_entropy(make_node: Any, bus: MemoryBus) -> None:
    t = "tenant-late"
    async with make_node("a", bus) as a:
        for i in range(20):
            await a.call("belief_assert", tenant=t, key=f"k{i}", value=i)
        await a.call("belief_retract", tenant=t, key="k7")
        async with make_node("c", bus) as c:  # missed every delta
            await eventually(lambda: dump(c, t) == dump(a, t))
            assert (await c.call("belief_stats", tenant=t))["size"] == 19


async def test_anti_entropy_repairs_a_lost_retract(make_node: Any, bus: MemoryBus) -> None:
    """Both saw the same entries; a retract's delta is lost: equal contexts, different live dots."""
    t = "tenant-lost"
    async with make_node("a", bus) as a, make_node("b", bus) as b:
        await a.call("belief_assert", tenant=t, key="k", value=1)
        await eventually(lambda: dump(b, t) == dump(a, t))
        # Retract on b with the bus detached from a's view: apply locally only (as if dropped).
        tr = await b.service.replica(t)
        async with tr.lock:
            delta = tr.replica.retract("k")
            assert delta is not None
        assert dump(a, t) != dump(b, t)
        await eventually(lambda: dump(a, t) == dump(b, t))
        assert not (await a.call("belief_get", tenant=t, key="k"))["found"]


async def test_restart_keeps_every_acknowledged_write(make_node: Any, bus: MemoryBus) -> None:
    t = "tenant-durable"
    async with make_node("a", bus, beliefs_snapshot_every=7) as a:
        node_id = a.service.node
        for i in range(30):
            await a.call("belief_assert", tenant=t, key=f"k{i}", value={"i": i})
        for i in range(0, 30, 3):
            await a.call("belief_retract", tenant=t, key=f"k{i}")
        # The periodic tick snapshots and trims the log once it passes 7 rows.
        await eventually(lambda: a.service._tenants[t].log_rows < 7)
        before = dump(a, t)
        await a.call("belief_assert", tenant=t, key="after-snapshot", value=True)
        before = dump(a, t)
    async with make_node("a", MemoryBus()) as again:  # same home: same node id and database
        assert again.service.node == node_id
        await again.call("belief_stats", tenant=t)
        assert dump(again, t) == before
        got = await again.call("belief_get", tenant=t, key="k4")
        assert got["belief"]["value"] == {"i": 4}
        # New writes continue the node's dot sequence instead of reusing a dot.
        await again.call("belief_assert", tenant=t, key="k4", value="new")
        tr = again.service._tenants[t]
        assert tr.state.ctx.vv[node_id] == 30 + 1 + 1  # asserts issue dots; retracts do not


async def test_store_replays_snapshot_and_log(make_node: Any, bus: MemoryBus) -> None:
    async with make_node("a", bus) as a:
        for i in range(5):
            await a.call("belief_assert", tenant="t", key=f"k{i}", value=i)
        tr = a.service._tenants["t"]
        await a.service.snapshot(tr)
        await a.call("belief_retract", tenant="t", key="k1")
        loaded = await BeliefStore(a.ctx.db, a.service.node).load("t")
        assert loaded.state == tr.state and loaded.log_rows == 1 and loaded.last_seq == 6


async def test_replication_tasks_stop_with_the_lifespan(make_node: Any, bus: MemoryBus) -> None:
    async with make_node("a", bus) as a:
        service = a.service
        assert service.is_running
        names = {t.get_name() for t in asyncio.all_tasks()}
        assert any(n.startswith("beliefs-receive-") for n in names)
    assert not service.is_running
    await asyncio.sleep(0)
    assert not any(t.get_name().startswith("beliefs-") for t in asyncio.all_tasks())
    assert bus.subscriber_count == 0


async def test_local_writes_announce_beliefs_changed(make_node: Any, bus: MemoryBus) -> None:
    async with make_node("a", bus) as a:
        sub = await bus.subscribe(["beliefs.changed"])
        await a.call("belief_assert", tenant="t-ev", key="k", value=1)
        await a.call("belief_retract", tenant="t-ev", key="k")
        seen = []
        async for ev in sub:
            seen.append((ev.tenant, ev.data["keys"], ev.data["op"]))
            if len(seen) == 2:
                break
        await sub.aclose()
        assert seen == [("t-ev", ["k"], "assert"), ("t-ev", ["k"], "retract")]


async def test_runs_alone_over_stdio(tmp_path: Any) -> None:
    import os
    import sys

    from mcp import Client, StdioServerParameters

    root = str(__import__("pathlib").Path(__file__).resolve().parents[3])
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "servers.beliefs", "--transport", "stdio"], cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": root, "VSM_HOME": str(tmp_path / "alone")},
    )
    async with Client(params) as c:
        res = await c.call_tool("belief_assert", {"key": "solo", "value": [1]})
        assert not res.is_error
        res = await c.call_tool("belief_get", {"key": "solo"})
        assert res.structured_content is not None and res.structured_content["found"]


async def test_malformed_bus_messages_do_not_stop_replication(make_node: Any, bus: MemoryBus) -> None:
    from vsm_mcp.bus.events import Event

    t = "tenant-garbage"
    async with make_node("a", bus) as a, make_node("b", bus) as b:
        for data in ({"node": "evil", "delta": {"v": 9}}, {"node": "evil", "kind": "digest", "digest": "x"},
                     {"node": "evil", "kind": "live", "live": [["n", [[5, 1]]]]}):
            await bus.publish(Event(topic=f"beliefs.delta.{t}", data=data))
        await a.call("belief_assert", tenant=t, key="still", value="works")
        await eventually(lambda: dump(b, t) == dump(a, t) != "")
        assert b.service.is_running


async def test_writes_are_acknowledged_and_kept_pending_while_the_bus_is_down(make_node: Any) -> None:
    from vsm_mcp.bus.amqp import AmqpBus

    dead = AmqpBus("amqp://guest:guest@127.0.0.1:1/")  # nothing listens on port 1
    try:
        async with make_node("a", dead) as a:
            for i in range(3):
                await a.call("belief_assert", tenant="t-down", key=f"k{i}", value=i)
            stats = await a.call("belief_stats", tenant="t-down")
            assert stats["size"] == 3 and stats["pending_deltas"] == 3
    finally:
        await dead.aclose()


async def test_a_cancelled_write_is_logged_and_applied_or_neither(make_node: Any, bus: MemoryBus) -> None:
    from vsm_mcp.crdt import Belief

    async with make_node("a", bus) as a:
        svc = a.service
        tr = await svc.replica("t-cancel")
        for i in range(60):
            task = asyncio.create_task(svc.assert_belief("t-cancel", f"k{i}", Belief(i)))
            await asyncio.sleep(i * 0.0004)  # cancel at ever later points of the write, commit included
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await svc.assert_belief("t-cancel", "last", Belief("x"))
        async with tr.lock:  # every shielded write has finished
            pass
        loaded = await BeliefStore(a.ctx.db, svc.node).load("t-cancel")
        assert loaded.state == tr.state  # no dot was issued twice


async def test_a_failed_log_write_is_not_applied_and_the_replica_reloads(make_node: Any, bus: MemoryBus) -> None:
    from sqlalchemy import text

    async with make_node("a", bus) as a:
        await a.call("belief_assert", tenant="t-fail", key="before", value=1)
        first = a.service._tenants["t-fail"]
        async with a.ctx.db.engine.begin() as conn:  # the database refuses the next log write
            await conn.execute(text("ALTER TABLE belief_log RENAME TO belief_log_away"))
        with pytest.raises(ToolFailed, match="database unavailable"):
            await a.call("belief_assert", tenant="t-fail", key="lost", value=2)
        assert first.stale and "t-fail" not in a.service._tenants
        async with a.ctx.db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE belief_log_away RENAME TO belief_log"))
        await a.call("belief_assert", tenant="t-fail", key="after", value=3)
        tr = a.service._tenants["t-fail"]
        assert tr is not first and sorted(tr.state.keys()) == ["after", "before"]
        loaded = await BeliefStore(a.ctx.db, a.service.node).load("t-fail")
        assert loaded.state == tr.state
