"""The episode analyzer on a real database: system_states rows equal a brute-force rollup of the
window's episodes, alerts reach the bus when a threshold breaks, re-runs are idempotent."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from sqlmodel import select

from tests.integration.workers.conftest import Env
from vsm_mcp.bus.events import Event
from vsm_mcp.models import Episode, SystemState, new_id
from vsm_mcp.workers.alerts import Thresholds
from vsm_mcp.workers.analyzer import analyze_tenant, system_name
from vsm_mcp.workers.rollup import DOWN, REJECTED

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
TH = Thresholds(min_calls=10, error_rate=0.25, latency_factor=2.0, latency_floor_ms=100.0, flap_changes=4)
OUTCOMES = ["ok"] * 6 + ["tool_error", "upstream_timeout", "upstream_unavailable", "rate_limited", "internal"]


async def add_episodes(env: Env, tenant: str, rows: list[tuple[datetime, str, str, str, float]]) -> None:
    async with env.db.tenant(tenant) as s:
        await s.execute(insert(Episode.__table__), [  # type: ignore[attr-defined]
            {"id": new_id(), "tenant_id": tenant, "created_at": at, "updated_at": at, "principal_id": "p",
             "server": server, "tool": tool, "outcome": outcome, "duration_ms": ms, "args_sha256": "",
             "error": "", "trace_id": "", "data": {}}
            for at, server, tool, outcome, ms in rows
        ])


async def states(env: Env, tenant: str) -> dict[str, SystemState]:
    async with env.db.tenant(tenant) as s:
        return {r.system: r for r in (await s.execute(select(SystemState))).scalars()}


def brute(rows: list[tuple[datetime, str, str, str, float]]) -> dict[str, Any]:
    rows = sorted(rows, key=lambda r: r[0])
    reached = sorted(r[4] for r in rows if r[3] not in REJECTED)
    flags = [r[3] in DOWN for r in rows if r[3] not in REJECTED]

    def pct(p: float) -> float:
        return min((v for v in reached if sum(x <= v for x in reached) * 100 >= p * len(reached)), default=0.0)

    ok = sum(r[3] == "ok" for r in rows)
    return {"calls": len(rows), "ok": ok, "reached": len(reached), "p50_ms": pct(50), "p95_ms": pct(95),
            "errors": dict(sorted(Counter(r[3] for r in rows if r[3] != "ok").items())),
            "flaps": sum(a != b for a, b in zip(flags, flags[1:], strict=False))}


async def test_rows_match_brute_force_and_only_the_window_counts(env: Env) -> None:
    rnd = random.Random(20)
    inside = [(T0 + timedelta(milliseconds=rnd.randrange(60_000)), rnd.choice("ab"), rnd.choice(["x", "y"]),
               rnd.choice(OUTCOMES), round(rnd.uniform(1, 500), 3)) for _ in range(300)]
    before = [(T0 - timedelta(seconds=1), "a", "x", "tool_error", 9999.0)]
    at_end = [(T0 + MIN, "a", "x", "tool_error", 9999.0)]  # [start, end): the end belongs to the next window
    await add_episodes(env, env.a, inside + before + at_end)
    await add_episodes(env, env.b, [(T0 + timedelta(seconds=5), "a", "x", "ok", 1.0)])  # another tenant
    result = await analyze_tenant(env.db, None, env.a, T0, T0 + MIN, TH)
    assert result.episodes == 300 and result.rows == 2 + 4
    rows = await states(env, env.a)
    assert set(rows) == {"upstream:a", "upstream:b", "tool:a:x", "tool:a:y", "tool:b:x", "tool:b:y"}
    for server in "ab":
        mine = [r for r in inside if r[1] == server]
        st = rows[system_name(server)].state
        assert {k: st[k] for k in brute(mine)} == brute(mine)
        assert rows[system_name(server)].health == pytest.approx(brute(mine)["ok"] / len(mine))
        for tool in ("x", "y"):
            mine_t = [r for r in mine if r[2] == tool]
            st_t = rows[system_name(server, tool)].state
            assert {k: st_t[k] for k in brute(mine_t)} == brute(mine_t)
            assert (st_t["server"], st_t["tool"], st_t["kind"]) == (server, tool, "tool")
    assert st["window"] == {"start": "2026-12-07T05:00:00.000000+00:00", "end": "2026-12-07T05:01:00.000000+00:00"}
    assert set(await states(env, env.b)) == set()  # never analysed: the other tenant's rows untouched


async def collect(env: Env, tenant: str) -> tuple[list[Event], asyncio.Task[None]]:
    sub = await env.bus.subscribe([f"alert.{tenant}.*"])
    got: list[Event] = []

    async def run() -> None:
        async for e in sub:
            got.append(e)

    return got, asyncio.create_task(run())


def calls(start: datetime, n: int, outcome: str = "ok", ms: float = 20.0, server: str = "echo") -> list[Any]:
    return [(start + timedelta(milliseconds=100 * i), server, "ping", outcome, ms) for i in range(n)]


async def test_alerts_fire_on_threshold_resolve_and_rerun_says_the_same(env: Env) -> None:
    a = env.a
    got, task = await collect(env, a)
    await add_episodes(env, a, calls(T0, 30))
    await add_episodes(env, a, calls(T0 + MIN, 15) + calls(T0 + MIN + timedelta(seconds=10), 15, "tool_error"))
    await add_episodes(env, a, calls(T0 + 2 * MIN, 30, ms=900.0))
    w1 = await analyze_tenant(env.db, env.bus, a, T0, T0 + MIN, TH)
    w2 = await analyze_tenant(env.db, env.bus, a, T0 + MIN, T0 + 2 * MIN, TH)
    again = await analyze_tenant(env.db, env.bus, a, T0 + MIN, T0 + 2 * MIN, TH)  # a step re-run
    w3 = await analyze_tenant(env.db, env.bus, a, T0 + 2 * MIN, T0 + 3 * MIN, TH)
    await asyncio.sleep(0.05)
    task.cancel()
    assert w1.alerts == [] and again.rows == 0 and again.alerts == w2.alerts
    fired = [(e.topic, e.data["status"], e.data["system"]) for e in got]
    # The upstream's alert covers its tool's (one message for one trouble); the tool row tracks it.
    assert fired[:1] == [(f"alert.{a}.error_rate", "firing", "upstream:echo")]
    assert fired[1:2] == fired[:1]  # the re-run published the same alert …
    assert got[1].data["idempotency_key"] == got[0].data["idempotency_key"]  # … with the same key
    assert all(e.tenant == a and e.type == "alert" for e in got)
    # Window 3: errors gone (resolved) but p95 jumped 20 → 900 ms over the baseline (latency firing).
    assert sorted((t.rsplit(".", 1)[-1], s) for t, s, _ in fired[2:]) == [("error_rate", "resolved"), ("latency", "firing")]
    assert {x["system"] for x in w3.alerts} == {"upstream:echo"}
    rows = await states(env, a)
    assert set(rows["upstream:echo"].state["alerts"]) == {"latency"} and rows["upstream:echo"].state["p95_ms"] == 900.0
    assert rows["tool:echo:ping"].state["alerts"]["latency"]["announced"] is False


async def test_upstream_flapping_raises_an_alert(env: Env) -> None:
    a = env.a
    got, task = await collect(env, a)
    pattern = ["ok", "upstream_unavailable"] * 6
    await add_episodes(env, a, [(T0 + timedelta(seconds=i), "flaky", "t", o, 5.0) for i, o in enumerate(pattern)])
    result = await analyze_tenant(env.db, env.bus, a, T0, T0 + MIN, TH)
    await asyncio.sleep(0.05)
    task.cancel()
    kinds = {(x["kind"], x["system"]) for x in result.alerts}
    assert ("flapping", "upstream:flaky") in kinds and ("flapping", "tool:flaky:t") not in kinds
    assert f"alert.{a}.flapping" in {e.topic for e in got}


async def test_a_tool_alert_is_announced_once_its_upstream_no_longer_covers_it(env: Env) -> None:
    a = env.a
    got, task = await collect(env, a)
    def tool(start: datetime, name: str, n: int, outcome: str = "ok") -> list[Any]:
        return [(start + timedelta(milliseconds=50 * i), "svc", name, outcome, 10.0) for i in range(n)]

    await add_episodes(env, a, tool(T0, "bad", 20, "tool_error") + tool(T0, "good", 20, "tool_error"))  # all down
    await add_episodes(env, a, tool(T0 + MIN, "bad", 10, "tool_error") + tool(T0 + MIN, "good", 40))  # 20 %: svc ok
    await add_episodes(env, a, tool(T0 + 2 * MIN, "bad", 10) + tool(T0 + 2 * MIN, "good", 40))  # bad recovers
    for w in range(3):
        await analyze_tenant(env.db, env.bus, a, T0 + w * MIN, T0 + (w + 1) * MIN, TH)
    await asyncio.sleep(0.05)
    task.cancel()
    said = [(e.data["system"], e.data["status"], e.data["window"]["start"][11:16]) for e in got]
    assert said == [
        ("upstream:svc", "firing", "05:00"),  # the tools' own alerts are covered by it
        ("upstream:svc", "resolved", "05:01"),
        ("tool:svc:bad", "firing", "05:01"),  # still failing once its upstream is fine: said now
        ("tool:svc:bad", "resolved", "05:02"),  # 'good' resolved too, silently: it was never announced
    ]
