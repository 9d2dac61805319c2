"""The collaboration protocol: agents (any MCP client) take the plan steps marked
``run: "agent"``.

``step_claim`` hands out one ready step under a lease; ``step_heartbeat`` extends it (and marks
the step running); ``step_complete`` / ``step_fail`` report; ``step_handoff`` passes the step to
another agent with a context. A lease that runs out returns the step to ``ready`` (the engine
waiting on the step does it, and step_claim also takes expired steps), so another agent
reclaims it; the first agent's late report is refused naming the new holder. Every step an
agent receives carries the plan's trace (``traceparent``) and any handoff context.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

from servers.planner.engine import Engine, traceparent
from servers.planner.events import PlanEvents
from servers.planner.states import refuse_step
from servers.planner.store import PlanStore
from servers.tool_errors import tool_errors
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import InvalidArguments
from vsm_mcp.models import utcnow

ACT = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)


def _agent(name: str) -> str:
    if not name or len(name) > 128:
        raise InvalidArguments("'agent' must be 1-128 characters naming the agent")
    return name


def _lease(lease_s: float) -> float:
    if not 1 <= lease_s <= 86_400:
        raise InvalidArguments("lease_s must be 1-86400 seconds")
    return lease_s


def add_collab_tools(server: MCPServer, ctx: ServerContext, store: PlanStore, events: PlanEvents, eng: Engine) -> None:
    async def tenant_of(mcp_ctx: Context) -> str:
        return (await ctx.principal_of(mcp_ctx)).tenant_id

    async def trace(tenant: str, plan_id: str) -> str:
        return (await store.plan(tenant, plan_id)).trace_id

    @server.tool(title="Claim the next plan step that waits for an agent (take work from the queue)", annotations=ACT)
    @tool_errors
    async def step_claim(
        agent: str, mcp_ctx: Context, lease_s: float = 60.0, tools: list[str] | None = None,
        plan_id: str | None = None,
    ) -> dict[str, Any]:
        """Claim one ready agent step (optionally only steps whose tool is in ``tools``, or of one
        plan) for ``lease_s`` seconds. Returns {"step": null} when there is none; else the step
        with its resolved arguments, the plan's traceparent, any handoff context and the lease end."""
        agent, lease_s = _agent(agent), _lease(lease_s)
        tenant = await tenant_of(mcp_ctx)
        for row in await store.claimable(tenant, agent, tools, plan_id):
            if not await store.take(tenant, row, agent, lease_s):
                continue  # another agent won this one
            trace_id = await trace(tenant, row.plan_id)
            await events.step(tenant, row.plan_id, row.step_id, "claimed", trace_id, agent=agent)
            eng.poke(row.plan_id)
            return {"step": {
                "plan_id": row.plan_id, "step_id": row.step_id, "tool": row.tool, "arguments": row.arguments or {},
                "traceparent": traceparent(trace_id, row.plan_id, row.step_id, row.attempts + 1) if trace_id else "",
                "handoff": row.handoff, "lease_until": (utcnow() + timedelta(seconds=lease_s)).isoformat(),
            }}
        return {"step": None}

    @server.tool(title="Extend the lease on a plan step an agent is working on", annotations=ACT)
    @tool_errors
    async def step_heartbeat(
        plan_id: str, step_id: str, agent: str, mcp_ctx: Context, lease_s: float = 60.0
    ) -> dict[str, Any]:
        """Extend the lease on a step this agent holds (and mark it running)."""
        agent, lease_s = _agent(agent), _lease(lease_s)
        tenant = await tenant_of(mcp_ctx)
        row = await store.held_by(tenant, plan_id, step_id, agent, "heartbeat")
        until = utcnow() + timedelta(seconds=lease_s)
        if not await store.set_step(tenant, plan_id, step_id, (row.state,), state="running", lease_until=until):
            row = await store.step(tenant, plan_id, step_id)
            raise refuse_step(plan_id, step_id, row.state, f"heartbeat as {agent}", row.agent)
        if row.state == "claimed":
            await events.step(tenant, plan_id, step_id, "running", await trace(tenant, plan_id), agent=agent)
        return {"plan_id": plan_id, "step_id": step_id, "state": "running", "lease_until": until.isoformat()}

    async def _report(tenant: str, plan_id: str, step_id: str, who: str, action: str, /, **values: Any) -> None:
        row = await store.held_by(tenant, plan_id, step_id, who, action)
        if not await store.set_step(tenant, plan_id, step_id, (row.state,), ended_at=utcnow(), lease_until=None, **values):
            row = await store.step(tenant, plan_id, step_id)
            raise refuse_step(plan_id, step_id, row.state, f"{action} as {who}", row.agent)
        eng.poke(plan_id)

    @server.tool(title="Complete a claimed plan step with its result", annotations=ACT)
    @tool_errors
    async def step_complete(
        plan_id: str, step_id: str, agent: str, mcp_ctx: Context, result: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Report a held step done; ``result`` becomes its structured result (later steps read it
        with {"$from": step, "path": "structured..."})."""
        tenant = await tenant_of(mcp_ctx)
        body = {"structured": result or {}, "text": "", "content": []}
        await _report(tenant, plan_id, step_id, _agent(agent), "complete", state="succeeded", result=body, error="")
        await events.step(tenant, plan_id, step_id, "succeeded", await trace(tenant, plan_id), agent=agent)
        return {"plan_id": plan_id, "step_id": step_id, "state": "succeeded"}

    @server.tool(title="Fail a claimed plan step (optionally for another agent to retry)", annotations=ACT)
    @tool_errors
    async def step_fail(
        plan_id: str, step_id: str, agent: str, error: str, mcp_ctx: Context, retry: bool = False
    ) -> dict[str, Any]:
        """Report a held step failed; with ``retry`` it goes back to ready for any agent instead."""
        tenant = await tenant_of(mcp_ctx)
        if retry:
            await _report(tenant, plan_id, step_id, _agent(agent), "fail", state="ready", agent="", error=error[:2000])
            state = "ready"
        else:
            await _report(tenant, plan_id, step_id, _agent(agent), "fail", state="failed", error=error[:2000])
            state = "failed"
        await events.step(tenant, plan_id, step_id, state, await trace(tenant, plan_id), agent=agent, error=error[:500])
        return {"plan_id": plan_id, "step_id": step_id, "state": state}

    @server.tool(title="Hand a claimed plan step over to another agent with context", annotations=ACT)
    @tool_errors
    async def step_handoff(
        plan_id: str, step_id: str, agent: str, to_agent: str, mcp_ctx: Context, context: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Hand a held step to ``to_agent`` with ``context`` (what was done, what remains); it
        gets them, and the plan's trace, when it claims the step."""
        tenant = await tenant_of(mcp_ctx)
        agent, to_agent = _agent(agent), _agent(to_agent)
        trace_id = await trace(tenant, plan_id)
        row = await store.held_by(tenant, plan_id, step_id, agent, "hand off")
        handoff = {"from": agent, "to": to_agent, "context": context or {}, "at": utcnow().isoformat(),
                   "trace_id": trace_id, "history": [*((row.handoff or {}).get("history", [])), agent]}
        if not await store.set_step(tenant, plan_id, step_id, (row.state,), state="ready", agent="",
                                    assigned_to=to_agent, lease_until=None, handoff=handoff):
            row = await store.step(tenant, plan_id, step_id)
            raise refuse_step(plan_id, step_id, row.state, f"hand off as {agent}", row.agent)
        await events.step(tenant, plan_id, step_id, "handoff", trace_id, agent=agent, to_agent=to_agent)
        eng.poke(plan_id)
        return {"plan_id": plan_id, "step_id": step_id, "state": "ready", "assigned_to": to_agent}


__all__ = ["add_collab_tools"]
