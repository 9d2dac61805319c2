"""The planner server (VSM System 3): plans as DAGs of tool calls, run durably, with agents
collaborating on the steps they claim.

Plan tools: plan_create, plan_approve, plan_run (returns at once), plan_status, plan_wait,
plan_pause, plan_resume, plan_cancel, plan_list, plan_from_goal, plan_result. Agent tools are in
collab.py. Execution (engine.py) is a DBOS workflow per plan on the ``plans`` queue, so any
process running the durable spine (serve, or `vsm-mcp worker`) may run it. See docs/planner.md.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

from servers.planner import engine, planning
from servers.planner.collab import add_collab_tools
from servers.planner.dag import Step, parse_steps
from servers.planner.events import PlanEvents
from servers.planner.states import PLAN_STATES, PLAN_TERMINAL
from servers.planner.store import PlanStore
from servers.tool_errors import tool_errors
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import Conflict, InvalidArguments

# Reads of a plan change as it runs: not "idempotent" in the router's cache sense (readOnly +
# idempotent = a deterministic answer the tool-result cache may keep).
READ = ToolAnnotations(read_only_hint=True, idempotent_hint=False, open_world_hint=False)
MOVE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def _iso(t: Any) -> str | None:
    return t.isoformat() if t is not None else None


def trace_of(traceparent: str | None, mcp_ctx: Any) -> str:
    """The trace id from ``traceparent`` (argument, else the request's ``_meta``), else a new one."""
    if not traceparent:
        try:
            meta = mcp_ctx.request_context.meta
            traceparent = (meta.get("traceparent") if meta else None) or None
        except (AttributeError, ValueError):
            traceparent = None
    if not traceparent:
        return secrets.token_hex(16)
    m = TRACEPARENT.match(str(traceparent).strip().lower())
    if m is None or m.group(1) == "0" * 32:
        raise InvalidArguments(f"traceparent {traceparent!r} is not W3C form 00-<32 hex>-<16 hex>-<2 hex>")
    return m.group(1)


def status_json(plan: Any, rows: list[Any]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    return {
        "plan_id": plan.id, "name": plan.name, "state": plan.state, "trace_id": plan.trace_id,
        "pause_reason": plan.pause_reason if plan.state == "paused" else "", "error": plan.error,
        "created_at": _iso(plan.created_at), "started_at": _iso(plan.started_at), "ended_at": _iso(plan.ended_at),
        "counts": counts,
        "steps": [
            {"id": r.step_id, "tool": r.tool, "run": r.run, "state": r.state, "attempts": r.attempts,
             "started_at": _iso(r.started_at), "ended_at": _iso(r.ended_at), "error": r.error,
             **({"agent": r.agent} if r.agent else {})}
            for r in rows
        ],
    }


def build(ctx: ServerContext) -> MCPServer:
    store = PlanStore(ctx.db)
    events = PlanEvents(ctx.bus)
    eng = engine.Engine(ctx, store, events, ctx.settings.plan_tenant_parallelism)
    engine.bind(eng)  # the workflow's steps run in this process with this context
    max_steps = ctx.settings.plan_max_steps
    server = MCPServer(
        "planner",
        instructions="Plans: DAGs of tool calls run durably (they survive restarts), step by step through "
        "the router as the plan's owner. plan_create → plan_approve → plan_run → plan_status/plan_result. "
        "Agents take steps marked run='agent' with step_claim and report with step_complete.",
    )

    async def _create(mcp_ctx: Context, name: str, steps: Any, goal: str) -> dict[str, Any]:
        if not name.strip() or len(name) > 200:
            raise InvalidArguments("'name' must be 1-200 characters")
        principal = await ctx.principal_of(mcp_ctx)
        order = parse_steps(steps, max_steps)
        idempotent = await planning.check_tools(ctx, principal, order)
        spec = [{**s.to_json(), "idempotent": idempotent.get(s.tool, False)} for s in order]
        plan_id = str(uuid.uuid4())
        plan = await store.create(principal.tenant_id, plan_id, name.strip(), goal, principal, order, spec)
        await events.plan(principal.tenant_id, plan_id, "created", "", name=plan.name, steps=len(order))
        return {"plan_id": plan_id, "state": plan.state, "steps": [s.id for s in order]}

    @server.tool(title="Create a plan: a workflow (DAG) of tool-call steps, as a draft", annotations=MOVE)
    @tool_errors
    async def plan_create(name: str, steps: list[dict[str, Any]], mcp_ctx: Context, goal: str = "") -> dict[str, Any]:
        """Create a draft plan: a DAG of steps {"id", "tool": "<server>__<tool>", "arguments",
        "after": [ids], "retry"?: {"attempts", "backoff_s"}, "timeout_s"?, "run"?: "router"|"agent"}.
        An argument may be {"$from": "<step id>", "path": "structured.items[0].id"} to take a value
        from an earlier step's result. Cycles, unknown tools or steps, bad references and arguments
        that do not match the tool's schema are refused (nothing is created). Approve, then run it."""
        return await _create(mcp_ctx, name, steps, goal)

    async def _move(mcp_ctx: Context, plan_id: str, action: str, **values: Any) -> Any:
        tenant = (await ctx.principal_of(mcp_ctx)).tenant_id
        plan = await store.move_plan(tenant, plan_id, action, **values)
        eng.poke(plan_id)
        return tenant, plan

    @server.tool(title="Approve a draft plan so it may run", annotations=MOVE)
    @tool_errors
    async def plan_approve(plan_id: str, mcp_ctx: Context) -> dict[str, Any]:
        """Approve a draft plan so it may run."""
        tenant, plan = await _move(mcp_ctx, plan_id, "approve")
        await events.plan(tenant, plan_id, "approved", plan.trace_id)
        return {"plan_id": plan_id, "state": plan.state}

    @server.tool(title="Run an approved plan (start the workflow in the background)", annotations=MOVE)
    @tool_errors
    async def plan_run(plan_id: str, mcp_ctx: Context, traceparent: str | None = None) -> dict[str, Any]:
        """Start an approved plan and return at once (watch plan_status, plan_wait or the
        plan.<tenant>.<plan>.* events). ``traceparent`` (W3C; else the request's _meta) sets the
        trace id every step call and event carries."""
        trace_id = trace_of(traceparent, mcp_ctx)
        from vsm_mcp.models import utcnow

        tenant, plan = await _move(mcp_ctx, plan_id, "run", trace_id=trace_id, started_at=utcnow())
        workflow_id = await engine.enqueue(tenant, plan_id)
        await events.plan(tenant, plan_id, "running", trace_id)
        return {"plan_id": plan_id, "state": plan.state, "trace_id": trace_id, "workflow_id": workflow_id}

    @server.tool(title="Status of a plan and each of its steps", annotations=READ)
    @tool_errors
    async def plan_status(plan_id: str, mcp_ctx: Context) -> dict[str, Any]:
        """The plan's state and every step's state, attempts, start/end times and error: how far
        it got, what happened to it and which step failed."""
        tenant = (await ctx.principal_of(mcp_ctx)).tenant_id
        return status_json(await store.plan(tenant, plan_id), await store.steps(tenant, plan_id))

    @server.tool(title="Wait for a plan to finish", annotations=READ)
    @tool_errors
    async def plan_wait(plan_id: str, mcp_ctx: Context, timeout_s: float = 30.0) -> dict[str, Any]:
        """Wait until the plan finishes, pauses or ``timeout_s`` passes, reporting progress
        (finished steps of all) to a client that sent a progressToken; returns plan_status."""
        tenant = (await ctx.principal_of(mcp_ctx)).tenant_id
        deadline = asyncio.get_running_loop().time() + max(0.0, min(timeout_s, 3600.0))
        last = -1
        while True:
            plan, rows = await store.plan(tenant, plan_id), await store.steps(tenant, plan_id)
            done = sum(1 for r in rows if r.state in ("succeeded", "failed", "skipped"))
            if done != last:
                await mcp_ctx.report_progress(done, len(rows), f"{done}/{len(rows)} steps finished")
                last = done
            if plan.state in PLAN_TERMINAL or plan.state == "paused" or asyncio.get_running_loop().time() >= deadline:
                return status_json(plan, rows)
            await eng.nap(plan_id)

    @server.tool(title="Pause a running plan", annotations=MOVE)
    @tool_errors
    async def plan_pause(plan_id: str, mcp_ctx: Context) -> dict[str, Any]:
        """Pause a running plan: steps in flight finish, no new step starts until plan_resume."""
        tenant, plan = await _move(mcp_ctx, plan_id, "pause", pause_reason="paused by request")
        await events.plan(tenant, plan_id, "paused", plan.trace_id, reason="paused by request")
        return {"plan_id": plan_id, "state": plan.state}

    @server.tool(title="Resume a paused plan", annotations=MOVE)
    @tool_errors
    async def plan_resume(
        plan_id: str, mcp_ctx: Context, decisions: dict[str, str] | None = None,
        results: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Resume a paused plan. A step left ``uncertain`` by a crash (a non-idempotent call that may
        or may not have happened) needs a decision: {"<step id>": "retry" | "succeeded" | "failed"};
        ``results`` gives the result of a step decided succeeded."""
        tenant = (await ctx.principal_of(mcp_ctx)).tenant_id
        rows = await store.steps(tenant, plan_id)
        uncertain = {r.step_id for r in rows if r.state == "uncertain"}
        decisions = decisions or {}
        for sid, choice in decisions.items():
            if sid not in uncertain:
                raise InvalidArguments(f"step {sid!r} is not uncertain; decisions are for uncertain steps only")
            if choice not in ("retry", "succeeded", "failed"):
                raise InvalidArguments(f"decision for step {sid!r} must be retry, succeeded or failed (got {choice!r})")
        undecided = sorted(uncertain - set(decisions))
        if undecided:
            raise Conflict(f"plan {plan_id} has uncertain steps {', '.join(undecided)}: resume with decisions "
                           "{\"<step>\": \"retry\"|\"succeeded\"|\"failed\"}", data={"uncertain": undecided})
        for sid, choice in decisions.items():
            await store.set_step(tenant, plan_id, sid, ("uncertain",), decision=choice,
                                 decision_result=(results or {}).get(sid))
        tenant, plan = await _move(mcp_ctx, plan_id, "resume", pause_reason="")
        await events.plan(tenant, plan_id, "resumed", plan.trace_id, decisions=decisions)
        return {"plan_id": plan_id, "state": plan.state}

    @server.tool(title="Cancel a plan", annotations=MOVE)
    @tool_errors
    async def plan_cancel(plan_id: str, mcp_ctx: Context) -> dict[str, Any]:
        """Cancel a plan that has not finished: steps not yet started are skipped."""
        tenant, plan = await _move(mcp_ctx, plan_id, "cancel")
        await events.plan(tenant, plan_id, "cancelled", plan.trace_id)
        return {"plan_id": plan_id, "state": plan.state}

    @server.tool(title="List plans", annotations=READ)
    @tool_errors
    async def plan_list(mcp_ctx: Context, state: str | None = None, limit: int = 50) -> dict[str, Any]:
        """The tenant's plans, newest first, optionally only those in ``state``."""
        if state is not None and state not in PLAN_STATES:
            raise InvalidArguments(f"state must be one of {', '.join(PLAN_STATES)} (got {state!r})")
        if not 1 <= limit <= 500:
            raise InvalidArguments("limit must be 1-500")
        tenant = (await ctx.principal_of(mcp_ctx)).tenant_id
        rows = await store.plans(tenant, state, limit)
        return {"plans": [{"plan_id": p.id, "name": p.name, "state": p.state, "steps": len(p.spec),
                           "created_at": _iso(p.created_at), "trace_id": p.trace_id} for p in rows]}

    @server.tool(title="Propose a plan of tool steps for a goal written in words", annotations=MOVE)
    @tool_errors
    async def plan_from_goal(goal: str, mcp_ctx: Context, max_steps: int = 5, create: bool = False) -> dict[str, Any]:
        """Propose a plan for ``goal``: one step per clause (split on ';', 'then' or new lines), each
        the registry's best tool for it (find_tools), in order. Arguments a step cannot take from its
        clause are listed under ``missing``. With ``create`` and nothing missing, the draft is created."""
        if not goal.strip():
            raise InvalidArguments("'goal' must not be empty")
        if not 1 <= max_steps <= 50:
            raise InvalidArguments("max_steps must be 1-50")
        principal = await ctx.principal_of(mcp_ctx)
        proposal = await planning.propose(ctx, principal, goal, max_steps)
        if create and proposal["steps"] and not proposal["missing"]:
            proposal["created"] = await _create(mcp_ctx, goal[:200], proposal["steps"], goal)
        return proposal

    @server.tool(title="Results (outputs) of a plan", annotations=READ)
    @tool_errors
    async def plan_result(plan_id: str, mcp_ctx: Context) -> dict[str, Any]:
        """A plan's results: ``outputs`` (the steps nothing runs after), every step's result,
        errors and counts. Partial while the plan runs."""
        tenant = (await ctx.principal_of(mcp_ctx)).tenant_id
        plan = await store.plan(tenant, plan_id)
        steps = [Step(s["id"], s["tool"], s.get("arguments", {}), s.get("after", [])) for s in plan.spec]
        return planning.aggregate(plan, await store.steps(tenant, plan_id), steps)

    add_collab_tools(server, ctx, store, events, eng)
    return server
