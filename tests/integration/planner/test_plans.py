"""Plans through real upstreams: fan-out/fan-in across an in-process and a stdio upstream, trace
and idempotency key in the upstream's _meta and in the events, state machine refusals, pause and
cancel, results, bad plans that create nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.planner.conftest import Planner, executions

pytestmark = pytest.mark.anyio
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def fan_plan(width: int = 18) -> list[dict[str, Any]]:
    """start → width workers (alternating in-process / stdio) → total (fan-in): width + 2 steps."""
    steps: list[dict[str, Any]] = [{"id": "start", "tool": "counter__work_idem", "arguments": {"key": "start"}}]
    for i in range(width):
        server = "counter" if i % 2 else "cstdio"
        steps.append({"id": f"w{i}", "tool": f"{server}__work", "after": ["start"],
                      "arguments": {"key": f"w{i}-{{}}".format("x" * i)}})
    steps.append({"id": "sum", "tool": "counter__total", "after": [f"w{i}" for i in range(width)],
                  "arguments": {"values": [{"$from": f"w{i}", "path": "structured.n"} for i in range(width)]}})
    return steps


async def test_twenty_step_fan_out_fan_in_succeeds(planner: Planner) -> None:
    plan_id = await planner.run("fan", fan_plan(18), traceparent=f"00-{TRACE}-00f067aa0ba902b7-01")
    status = await planner.wait_state(plan_id, "succeeded", "failed")
    assert status["state"] == "succeeded", status
    assert len(status["steps"]) == 20 and {s["state"] for s in status["steps"]} == {"succeeded"}
    assert all(s["attempts"] == 1 for s in status["steps"])
    result = await planner.call("planner__plan_result", plan_id=plan_id)
    expected = sum(len(f"w{i}-" + "x" * i) for i in range(18))
    assert result["outputs"] == {"sum": {"total": expected}}
    runs = executions(planner.log, plan_id)
    assert len(runs) == 20  # each step ran exactly once
    assert {r["ppid"] for r in runs if r["tool"] == "work" and int(r["key"][1:].split("-")[0]) % 2 == 0} != set()
    # trace id and idempotency key reach the upstream in _meta ...
    assert {r["traceparent"].split("-")[1] for r in runs} == {TRACE}
    assert {r["idem"] for r in runs} == {f"{plan_id}:{s['id']}" for s in status["steps"]}
    # ... and every plan/step event carries the trace
    mine = [e for e in planner.events if e.data.get("plan_id") == plan_id]
    assert {e.topic.split(".")[-1] for e in mine if e.topic.startswith("plan.")} >= {"running", "succeeded"}
    assert {e.trace_id for e in mine if e.type not in ("plan.created", "plan.approved")} == {TRACE}
    assert f"plan.{planner.principal.tenant_id}.{plan_id}.succeeded" in {e.topic for e in mine}


@pytest.mark.parametrize(
    ("steps", "needle"),
    [
        ([{"id": "a", "tool": "counter__work", "arguments": {"key": "k"}, "after": ["b"]},
          {"id": "b", "tool": "counter__work", "arguments": {"key": "k"}, "after": ["a"]}], "plan has a cycle"),
        ([{"id": "a", "tool": "counter__nope", "arguments": {}}], "step 'a' names unknown tool 'counter__nope'"),
        ([{"id": "a", "tool": "counter__work", "arguments": {"key": {"$from": "ghost"}}}],
         "reads from unknown step 'ghost'"),
        ([{"id": "a", "tool": "counter__work", "arguments": {"key": 5}}],
         "step 'a' arguments for counter__work at /key: 5 is not of type 'string'"),
        ([{"id": "a", "tool": "counter__work", "arguments": {}}], "'key' is a required property"),
        ([{"id": f"s{i}", "tool": "counter__work", "arguments": {"key": "k"}} for i in range(1001)],
         "plan has 1001 steps; at most 1000 are allowed"),
    ],
)
async def test_bad_plans_are_one_line_and_create_nothing(planner: Planner, steps: list[Any], needle: str) -> None:
    before = (await planner.call("planner__plan_list", limit=500))["plans"]
    text = await planner.error("planner__plan_create", name="bad", steps=steps)
    assert needle in text
    assert "\n" not in text and "Traceback" not in text
    assert (await planner.call("planner__plan_list", limit=500))["plans"] == before


async def test_state_machine_refusals_name_the_state(planner: Planner) -> None:
    plan_id = (await planner.call("planner__plan_create", name="sm", steps=[
        {"id": "a", "tool": "counter__work", "arguments": {"key": "a"}}]))["plan_id"]
    assert "is draft; run needs a plan that is approved" in await planner.error("planner__plan_run", plan_id=plan_id)
    assert "is draft; pause needs a plan that is running" in await planner.error("planner__plan_pause", plan_id=plan_id)
    await planner.call("planner__plan_approve", plan_id=plan_id)
    assert "is approved; approve needs a plan that is draft" in await planner.error("planner__plan_approve", plan_id=plan_id)
    await planner.call("planner__plan_cancel", plan_id=plan_id)
    assert "is cancelled; resume needs a plan that is paused" in await planner.error("planner__plan_resume", plan_id=plan_id)
    assert "not_found: no plan 'nope'" in await planner.error("planner__plan_status", plan_id="nope")


async def test_pause_holds_new_steps_and_resume_finishes(planner: Planner) -> None:
    steps = [{"id": "a", "tool": "counter__work", "arguments": {"key": "a", "delay_ms": 300}},
             {"id": "b", "tool": "counter__work", "arguments": {"key": "b"}, "after": ["a"]}]
    plan_id = await planner.run("pause", steps)
    await planner.call("planner__plan_pause", plan_id=plan_id)
    status = await planner.status(plan_id)
    assert status["state"] == "paused" and status["pause_reason"] == "paused by request"
    by_id = {s["id"]: s for s in (await planner.call("planner__plan_wait", plan_id=plan_id, timeout_s=2))["steps"]}
    assert by_id["b"]["state"] in ("pending", "ready")  # held while paused
    await planner.call("planner__plan_resume", plan_id=plan_id)
    assert (await planner.wait_state(plan_id, "succeeded", "failed"))["state"] == "succeeded"


async def test_cancel_skips_what_has_not_started(planner: Planner) -> None:
    steps = [{"id": "a", "tool": "counter__work", "arguments": {"key": "a", "delay_ms": 400}},
             {"id": "b", "tool": "counter__work", "arguments": {"key": "b"}, "after": ["a"]}]
    plan_id = await planner.run("cancel", steps)
    await planner.call("planner__plan_cancel", plan_id=plan_id)
    status = await planner.wait_state(plan_id, "cancelled")
    await _settled(planner, plan_id)
    assert {s["id"]: s["state"] for s in (await planner.status(plan_id))["steps"]}["b"] == "skipped"
    assert status["state"] == "cancelled"
    assert "b" not in {r["key"] for r in executions(planner.log, plan_id)}


async def _settled(planner: Planner, plan_id: str) -> None:
    from tests.polling import eventually

    async def done() -> bool:
        return all(s["state"] in ("succeeded", "failed", "skipped") for s in (await planner.status(plan_id))["steps"])

    await eventually(done, 30, "steps to settle")


async def test_a_failing_step_fails_the_plan_and_skips_its_dependents(planner: Planner) -> None:
    steps = [{"id": "a", "tool": "counter__work", "arguments": {"key": "a"}},
             {"id": "bad", "tool": "counter__total", "arguments": {"values": [1]}, "after": ["a"]},
             {"id": "c", "tool": "counter__work", "arguments": {"key": {"$from": "bad", "path": "structured.nope"}},
              "after": ["bad"]}]
    plan_id = await planner.run("fails", steps)
    status = await planner.wait_state(plan_id, "succeeded", "failed")
    states = {s["id"]: s["state"] for s in status["steps"]}
    assert status["state"] == "failed" and states == {"a": "succeeded", "bad": "succeeded", "c": "failed"}
    assert "path 'structured.nope' does not exist" in status["error"]


async def test_plan_from_goal_selects_tools_through_the_registry(planner: Planner) -> None:
    proposal = await planner.call("planner__plan_from_goal", goal="sum the values; then count one execution of a key")
    assert [c["clause"] for c in proposal["candidates"]] == ["sum the values", "count one execution of a key"]
    first, second = proposal["steps"]
    assert first["tool"].endswith("__total") and second["tool"].split("__")[1] in ("work", "work_idem")
    assert second["after"] == ["s1"] and second["arguments"] == {"key": "count one execution of a key"}
    assert proposal["missing"] == [{"step": "s1", "clause": "sum the values", "arguments": ["values"]}]
    assert "created" not in proposal  # something is missing: nothing is created
    made = await planner.call("planner__plan_from_goal", goal="count one execution of a key", create=True)
    plan_id = made["created"]["plan_id"]
    assert (await planner.status(plan_id))["state"] == "draft"


async def test_plan_wait_reports_progress(planner: Planner) -> None:
    steps = [{"id": f"s{i}", "tool": "counter__work_idem", "arguments": {"key": f"p{i}", "delay_ms": 50},
              "after": [f"s{i - 1}"] if i else []} for i in range(4)]
    plan_id = await planner.run("progress", steps)
    seen: list[tuple[float, float | None]] = []

    async def progress(done: float, total: float | None, _message: str | None) -> None:
        seen.append((done, total))

    res = await planner.runtime.dispatcher.call_tool(
        planner.principal, "planner__plan_wait", {"plan_id": plan_id, "timeout_s": 60}, progress=progress
    )
    assert not res.is_error and res.structured_content["state"] == "succeeded"
    assert seen and seen[-1] == (4, 4) and all(t == 4 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
