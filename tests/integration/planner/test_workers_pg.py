"""Production topology: one router (not working the queues) and two `vsm-mcp worker` processes on
PostgreSQL + RabbitMQ. The worker running a plan is SIGKILLed mid-plan; the other takes the plan
over (executor sweep) and finishes it."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RABBITMQ_URL
from tests.integration.edge.conftest import SseReader
from tests.integration.planner import procs
from tests.integration.planner.conftest import executions, hold
from tests.polling import eventually
from tests.ports import free_port
from tests.procs import kill, stop, wait_ready
from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database
from vsm_mcp.tenants import ensure_tenant

pytestmark = [pytest.mark.anyio, pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow]
WIDTH = 8
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def watch(base: str, plan_id: str, out: list[dict[str, Any]]) -> None:
    """Collect the plan's events from the router's SSE endpoint until the plan's end."""
    async with httpx.AsyncClient(timeout=None) as client:
        async with client.stream("GET", f"{base}/v1/events", params={"topics": f"plan.*.{plan_id}.*,step.*.{plan_id}.#"}) as resp:
            assert resp.status_code == 200
            reader = SseReader(resp)
            while True:
                ev = await reader.next_event(timeout=120)
                body = json.loads(ev.data)
                out.append(body)
                if body["type"] in ("plan.succeeded", "plan.failed"):
                    return


def plan() -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [{"id": "start", "tool": "cstdio__work_idem", "arguments": {"key": "start"}}]
    steps += [{"id": f"h{i}", "tool": "cstdio__work_idem", "after": ["start"],
               "arguments": {"key": f"h{i}", "hold": True}} for i in range(WIDTH)]
    steps.append({"id": "sum", "tool": "counter__total", "after": [f"h{i}" for i in range(WIDTH)],
                  "arguments": {"values": [{"$from": f"h{i}", "path": "structured.n"} for i in range(WIDTH)]}})
    return steps


async def test_kill_the_worker_running_a_plan_the_other_finishes(
    tmp_path: Path, pg_owner_url: str, pg_app_url: str
) -> None:
    await asyncio.to_thread(migrate.upgrade, pg_owner_url)
    owner = Database(load_settings(database_url=pg_owner_url))
    try:
        await ensure_tenant(owner, "default")  # the app role may not create tenants
    finally:
        await owner.aclose()
    log = tmp_path / "counter.log"
    manifest = procs.write_manifest(tmp_path / "planner.yaml", log)
    common = {"VSM_DATABASE_URL": pg_app_url, "VSM_MIGRATION_DATABASE_URL": pg_owner_url, "VSM_BUS_URL": RABBITMQ_URL,
              "VSM_DBOS_EXECUTOR_LEASE_S": "2", "COUNTER_LOG": str(log)}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    running: list[Any] = []
    hold(log, True)
    try:
        for n in range(2):
            home = tmp_path / f"w{n}"
            home.mkdir()
            running.append(procs.spawn(["worker", "--queues", "plans", "--manifest", str(manifest)],
                               {**common, "VSM_HOME": str(home / ".vsm")}, home, f"worker{n}"))
        router = procs.spawn(["serve", "--port", str(port), "--manifest", str(manifest)],
                       {**common, "VSM_HOME": str(tmp_path / ".vsm"), "VSM_SERVE_QUEUES": "none"}, tmp_path, "router")
        running.append(router)
        await wait_ready(base, router, tmp_path / "router.err")
        plan_id = (await procs.call(base, "planner__plan_create", name="workers", steps=plan()))["plan_id"]
        await procs.call(base, "planner__plan_approve", plan_id=plan_id)
        # The router's /v1/events sees the plan's events, which the workers publish on RabbitMQ.
        events: list[dict[str, Any]] = []
        watcher = asyncio.create_task(watch(base, plan_id, events))
        await asyncio.sleep(1)  # the SSE subscription is in place
        await procs.call(base, "planner__plan_run", plan_id=plan_id, traceparent=f"00-{TRACE}-00f067aa0ba902b7-01")
        await eventually(lambda: len(executions(log)) >= 1 + WIDTH, 120, "the fan-out in flight on a worker")
        (busy,) = {r["ppid"] for r in executions(log)}  # the stdio counter's parent: the worker running the plan
        assert busy != router.pid
        victim = next(p for p in running[:2] if p.pid == busy)
        survivor = next(p for p in running[:2] if p is not victim)
        kill(victim)
        hold(log, False)
        status = await procs.wait_state(base, plan_id, "succeeded", "failed", timeout=120)
        assert status["state"] == "succeeded", status
        assert survivor.poll() is None
        await asyncio.wait_for(watcher, 30)
        assert {e["trace_id"] for e in events} == {TRACE}
        assert {e["type"] for e in events} >= {"plan.running", "plan.succeeded", "step.succeeded"}
    finally:
        stop(*running)
    runs = executions(log)
    assert {r["ppid"] for r in runs if r["tool"] == "work_idem"} == {busy, survivor.pid}  # stdio: parent = worker
    assert {r["pid"] for r in runs if r["tool"] == "total"} == {survivor.pid}  # in-process upstream
    counts = Counter(r["key"] for r in runs)
    assert counts["start"] == 1  # finished on the dead worker: not run again by the survivor
    assert all(counts[f"h{i}"] == 2 for i in range(WIDTH))  # in flight when it died, idempotent: once more
