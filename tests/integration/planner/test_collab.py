"""The collaboration protocol: agents claim agent steps under leases; an agent that goes silent
loses its step when the lease runs out and another agent reclaims and completes it; a handoff
carries its context and the plan's trace; refusals name the state and the holder."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.planner.conftest import Planner

pytestmark = pytest.mark.anyio
TRACE = "0af7651916cd43dd8448eb211c80319c"


def review_plan() -> list[dict[str, Any]]:
    return [
        {"id": "draft", "tool": "counter__work_idem", "arguments": {"key": "draft"}},
        {"id": "review", "tool": "review", "run": "agent", "after": ["draft"],
         "arguments": {"text": {"$from": "draft", "path": "structured.key"}}},
        {"id": "publish", "tool": "counter__work", "after": ["review"],
         "arguments": {"key": {"$from": "review", "path": "structured.verdict"}}},
    ]


async def claim(planner: Planner, agent: str, plan_id: str, lease_s: float = 60) -> dict[str, Any] | None:
    for _ in range(200):
        got = await planner.call("planner__step_claim", agent=agent, lease_s=lease_s, tools=["review"], plan_id=plan_id)
        if got["step"] is not None:
            return dict(got["step"])
        await asyncio.sleep(0.05)
    return None


async def test_lease_expiry_lets_another_agent_reclaim(planner: Planner) -> None:
    plan_id = await planner.run("collab", review_plan(), traceparent=f"00-{TRACE}-b7ad6b7169203331-01")
    first = await claim(planner, "agent-a", plan_id, lease_s=2)
    assert first is not None and first["step_id"] == "review"
    assert first["arguments"] == {"text": "draft"}  # resolved from the engine's step
    assert first["traceparent"].split("-")[1] == TRACE
    # agent-a dies: no heartbeat. Until the lease ends nobody else gets the step ...
    assert (await planner.call("planner__step_claim", agent="agent-b", tools=["review"], plan_id=plan_id))["step"] is None
    # ... after it, agent-b reclaims it and completes it.
    second = await claim(planner, "agent-b", plan_id)
    assert second is not None and second["step_id"] == "review"
    await planner.call("planner__step_heartbeat", plan_id=plan_id, step_id="review", agent="agent-b")
    late = await planner.error("planner__step_complete", plan_id=plan_id, step_id="review", agent="agent-a",
                               result={"verdict": "a"})
    assert "step 'review' of plan" in late and "is running by agent-b; cannot complete as agent-a" in late
    await planner.call("planner__step_complete", plan_id=plan_id, step_id="review", agent="agent-b",
                       result={"verdict": "ok"})
    status = await planner.wait_state(plan_id, "succeeded", "failed")
    assert status["state"] == "succeeded", status
    review = next(s for s in status["steps"] if s["id"] == "review")
    assert review["attempts"] == 2 and review["agent"] == "agent-b"
    assert (await planner.call("planner__plan_result", plan_id=plan_id))["results"]["review"] == {"verdict": "ok"}
    tenant = planner.principal.tenant_id
    topics = [e.topic for e in planner.events if e.data.get("plan_id") == plan_id]
    assert f"step.{tenant}.{plan_id}.review.claimed" in topics
    assert topics.count(f"step.{tenant}.{plan_id}.review.claimed") == 2  # by a, then (lease over) by b


async def test_handoff_carries_context_and_trace(planner: Planner) -> None:
    plan_id = await planner.run("handoff", review_plan(), traceparent=f"00-{TRACE}-b7ad6b7169203331-01")
    got = await claim(planner, "agent-a", plan_id)
    assert got is not None
    await planner.call("planner__step_handoff", plan_id=plan_id, step_id="review", agent="agent-a",
                       to_agent="agent-c", context={"done": "read it", "left": "sign off"})
    # handed to agent-c: agent-b cannot take it
    assert (await planner.call("planner__step_claim", agent="agent-b", tools=["review"], plan_id=plan_id))["step"] is None
    mine = await claim(planner, "agent-c", plan_id)
    assert mine is not None
    assert mine["handoff"]["context"] == {"done": "read it", "left": "sign off"}
    assert mine["handoff"]["from"] == "agent-a" and mine["handoff"]["trace_id"] == TRACE
    assert mine["traceparent"].split("-")[1] == TRACE
    await planner.call("planner__step_fail", plan_id=plan_id, step_id="review", agent="agent-c", error="rejected")
    status = await planner.wait_state(plan_id, "succeeded", "failed")
    assert status["state"] == "failed"
    assert {s["id"]: s["state"] for s in status["steps"]} == {"draft": "succeeded", "review": "failed", "publish": "skipped"}


async def test_router_steps_are_not_for_agents(planner: Planner) -> None:
    plan_id = await planner.run("noagents", [{"id": "a", "tool": "counter__work", "arguments": {"key": "x", "delay_ms": 200}}])
    text = await planner.error("planner__step_complete", plan_id=plan_id, step_id="a", agent="x", result={})
    assert "it is run by the router, not by agents" in text
    await planner.wait_state(plan_id, "succeeded")
