"""Production topology: one router (not working the queues) and two `vsm-mcp worker` processes on
PostgreSQL + RabbitMQ. The worker running a plan is SIGKILLed mid-plan; the other takes the plan
over (executor sweep) and finishes it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RABBITMQ_URL
from tests.integration.planner import procs
from tests.integration.planner.conftest import eventually, executions, hold
from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database
from vsm_mcp.tenants import ensure_tenant

pytestmark = [pytest.mark.anyio, pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow]
WIDTH = 8


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
    import asyncio

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
    port = procs.free_port()
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
        await procs.wait_ready(base, router)
        plan_id = (await procs.call(base, "planner__plan_create", name="workers", steps=plan()))["plan_id"]
        await procs.call(base, "planner__plan_approve", plan_id=plan_id)
        await procs.call(base, "planner__plan_run", plan_id=plan_id)
        await eventually(lambda: len(executions(log)) >= 1 + WIDTH, 120, "the fan-out in flight on a worker")
        (busy,) = {r["ppid"] for r in executions(log)}  # the stdio counter's parent: the worker running the plan
        assert busy != router.pid
        victim = next(p for p in running[:2] if p.pid == busy)
        survivor = next(p for p in running[:2] if p is not victim)
        procs.kill(victim)
        hold(log, False)
        status = await procs.wait_state(base, plan_id, "succeeded", "failed", timeout=120)
        assert status["state"] == "succeeded", status
        assert survivor.poll() is None
    finally:
        for p in running:
            procs.stop(p)
    runs = executions(log)
    assert {r["ppid"] for r in runs if r["tool"] == "work_idem"} == {busy, survivor.pid}  # stdio: parent = worker
    assert {r["pid"] for r in runs if r["tool"] == "total"} == {survivor.pid}  # in-process upstream
    counts = Counter(r["key"] for r in runs)
    assert counts["start"] == 1  # finished on the dead worker: not run again by the survivor
    assert all(counts[f"h{i}"] == 2 for i in range(WIDTH))  # in flight when it died, idempotent: once more
