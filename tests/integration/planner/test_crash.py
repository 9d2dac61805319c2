"""SIGKILL of the router mid-plan (SQLite, the embedded default): after a restart the plan
finishes; no completed step runs again; in-flight steps run again only where the tool is
idempotent, the others become uncertain and the plan pauses for a decision."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.planner import procs
from tests.integration.planner.conftest import executions, hold
from tests.polling import eventually
from tests.ports import free_port
from tests.procs import kill, stop, wait_ready

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def crash_plan() -> list[dict[str, Any]]:
    """20 steps: start → 12 quick steps (done before the crash) + 3 non-idempotent and 3 idempotent
    steps held in flight → sum (the fan-in)."""
    steps: list[dict[str, Any]] = [{"id": "start", "tool": "cstdio__work_idem", "arguments": {"key": "start"}}]
    for i in range(12):
        server = "cstdio" if i % 2 else "counter"
        steps.append({"id": f"d{i}", "tool": f"{server}__work", "after": ["start"], "arguments": {"key": f"d{i}"}})
    for i in range(3):
        steps.append({"id": f"w{i}", "tool": "cstdio__work", "after": ["start"],
                      "arguments": {"key": f"w{i}", "hold": True}})
        steps.append({"id": f"i{i}", "tool": "cstdio__work_idem", "after": ["start"],
                      "arguments": {"key": f"i{i}", "hold": True}})
    fan = [f"d{i}" for i in range(12)] + [f"w{i}" for i in range(3)] + [f"i{i}" for i in range(3)]
    steps.append({"id": "sum", "tool": "counter__total", "after": fan,
                  "arguments": {"values": [{"$from": s, "path": "structured.n"} for s in fan]}})
    return steps


async def test_sigkill_router_mid_plan_then_restart(tmp_path: Path) -> None:
    log = tmp_path / "counter.log"
    manifest = procs.write_manifest(tmp_path / "planner.yaml", log)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"VSM_HOME": str(tmp_path / ".vsm"), "COUNTER_LOG": str(log)}
    args = ["serve", "--port", str(port), "--manifest", str(manifest)]
    hold(log, True)
    router = procs.spawn(args, env, tmp_path, "router1")
    try:
        await wait_ready(base, router, tmp_path / "router1.err")
        plan_id = (await procs.call(base, "planner__plan_create", name="crash", steps=crash_plan()))["plan_id"]
        await procs.call(base, "planner__plan_approve", plan_id=plan_id)
        await procs.call(base, "planner__plan_run", plan_id=plan_id)
        await eventually(lambda: len(executions(log)) >= 19, 60, "13 steps done and six in flight")

        async def recorded() -> bool:  # the quick steps' ends are committed, not just executed
            steps = (await procs.call(base, "planner__plan_status", plan_id=plan_id))["steps"]
            return sum(1 for st in steps if st["state"] == "succeeded") == 13

        await eventually(recorded, 60, "the 13 finished steps to be recorded")
    finally:
        kill(router)
    hold(log, False)
    router = procs.spawn(args, env, tmp_path, "router2")
    try:
        await wait_ready(base, router, tmp_path / "router2.err")
        status = await procs.wait_state(base, plan_id, "paused")
        states = {s["id"]: s["state"] for s in status["steps"]}
        assert states["start"] == "succeeded"
        assert {states[f"w{i}"] for i in range(3)} == {"uncertain"}
        assert "in flight at a crash" in status["pause_reason"]
        await eventually(lambda: sum(1 for r in executions(log) if r["tool"] == "work_idem") == 1 + 6, 60,
                         "the idempotent in-flight steps to run again")
        await procs.call(base, "planner__plan_resume", plan_id=plan_id,
                   decisions={"w0": "retry", "w1": "succeeded", "w2": "retry"}, results={"w1": {"n": 2}})
        status = await procs.wait_state(base, plan_id, "succeeded", "failed")
        assert status["state"] == "succeeded", status
    finally:
        stop(router)
    runs = Counter(r["key"] for r in executions(log))
    assert len(status["steps"]) == 20
    assert runs["start"] == 1 and all(runs[f"d{i}"] == 1 for i in range(12))  # completed: never again
    assert [runs[f"i{i}"] for i in range(3)] == [2, 2, 2]  # in flight, idempotent: once more
    assert [runs[f"w{i}"] for i in range(3)] == [2, 1, 2]  # in flight, not idempotent: only as decided
    steps = {s["id"]: s for s in status["steps"]}
    assert steps["i0"]["attempts"] == 2 and steps["start"]["attempts"] == 1
