"""The CEP server: ``cep_rule_put``, ``cep_rule_list``, ``cep_rule_delete``, ``cep_rule_test``.

Rules (servers/cep/lang.py) are per tenant; while the server's lifespan is entered the runtime
(runtime.py) matches every tenant event on the bus and publishes ``cep.match.<rule>``; a rule
with an action calls a tool or starts a plan as the rule's owner, through the router.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

from servers.cep.actions import ActionRunner, bind, check_action
from servers.cep.engine import rule_version, run_rule
from servers.cep.lang import parse_rule
from servers.cep.runtime import CepRuntime
from servers.cep.store import CepStore, RuleDef
from servers.tool_errors import tool_errors
from vsm_mcp.auth import Principal
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import InvalidArguments

RUNTIME_KEY = "cep"
MAX_TEST_EVENTS = 10_000
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


def runtime_of(ctx: ServerContext) -> CepRuntime:
    """The one CEP runtime of this process (``ctx.extras``), made on first use."""
    rt = ctx.extras.get(RUNTIME_KEY)
    if rt is None:

        async def call(principal: Principal, tool: str, arguments: dict[str, Any]) -> Any:
            # Looked up per call: the router sets ctx.tool_caller; run alone, this raises
            # UpstreamUnavailable and the failure is reported as cep.action.failed.<rule>.
            return await ctx.tools.call(principal, tool, arguments, source="cep")

        runner = ActionRunner(call, ctx.bus)
        bind(runner)  # the durable action workflow (actions.py) runs this process's calls
        rt = ctx.extras[RUNTIME_KEY] = CepRuntime(
            ctx.bus, CepStore(ctx.db), actions=runner,
            queue=ctx.settings.cep_queue, flush_s=ctx.settings.cep_timer_flush_ms / 1000,
        )
    assert isinstance(rt, CepRuntime)
    return rt


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArguments("rule name: 1-64 characters of letters, digits, '_' or '-' (it becomes a topic word)")
    return name


def _time_of(raw: Any, previous: float, index: int) -> float:
    if raw is None:
        return previous
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise InvalidArguments(f"events[{index}].time: give unix seconds or ISO 8601 text, got {raw!r}")


def test_events(events: list[dict[str, Any]], tenant: str) -> list[tuple[dict[str, Any], float]]:
    """``cep_rule_test``'s events as (envelope, time); a missing time repeats the previous one."""
    if not isinstance(events, list) or len(events) > MAX_TEST_EVENTS:
        raise InvalidArguments(f"events must be a list of at most {MAX_TEST_EVENTS} objects")
    out, t = [], 0.0
    for i, e in enumerate(events):
        if not isinstance(e, dict) or not isinstance(e.get("topic"), str) or not e["topic"]:
            raise InvalidArguments(f"events[{i}]: an object with a 'topic' (and optional data, time, id, type)")
        if not isinstance(e.get("data", {}), dict):
            raise InvalidArguments(f"events[{i}].data must be an object")
        t = _time_of(e.get("time"), t, i)
        env = {"id": str(e.get("id", f"e{i}")), "topic": e["topic"], "tenant": tenant, "type": str(e.get("type", "")),
               "time": str(e.get("time", "")), "data": e.get("data", {}), "trace_id": ""}
        out.append((env, t))
    return out


def build(ctx: ServerContext) -> MCPServer:
    runtime = runtime_of(ctx)
    store = runtime.store
    assert store is not None

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[dict[str, Any]]:
        async with runtime.running():
            yield {}

    server = MCPServer(
        "cep",
        instructions="Complex-event rules over the tenant's event stream: sequences (A -> B within 5m), "
        "absences (A -> not B for 10m), counts and sums over sliding or tumbling windows, partitioned "
        "'by' a key, with CEL predicates. A match publishes cep.match.<rule> and can call a tool or start a plan.",
        lifespan=lifespan,
    )

    @server.tool(title="Create an event rule: detect a pattern of events (sequence, absence, count within a time window) and alert or start a plan", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True))
    @tool_errors
    async def cep_rule_put(
        name: str, rule: str, mcp_ctx: Context, action: dict[str, Any] | None = None, enabled: bool = True,
        description: str = "",
    ) -> dict[str, Any]:
        """Create or replace rule ``name`` for the calling tenant. ``rule`` is the rule text, e.g.
        ``tool.failed -> tool.called within 5m by data.server``, ``plan.started -> not plan.finished
        for 10m by data.plan_id`` or ``count(tool.failed[data.server == "x"]) >= 5 within 1m``.
        ``action`` (optional): {"tool": "<server>__<tool>", "arguments": {...}} or {"plan": {...},
        "run": true}; strings "${first.data.x}" take values from the match. The action runs as
        you (your scopes at the time of this call). A changed rule starts with fresh state."""
        check_name(name)
        parsed = parse_rule(rule)
        if len(description) > 1000:
            raise InvalidArguments("description: at most 1000 characters")
        who = await ctx.principal_of(mcp_ctx)
        owner = {"key_id": who.key_id, "tenant_name": who.tenant_name, "scopes": sorted(who.scopes)}
        rd = RuleDef(who.tenant_id, name, parsed.source, rule_version(parsed.source), check_action(action), owner,
                     enabled, description)
        await store.put_rule(rd)
        runtime.install(rd)
        return rd.summary()

    @server.tool(title="List the event pattern rules", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    @tool_errors
    async def cep_rule_list(mcp_ctx: Context) -> dict[str, Any]:
        """The calling tenant's rules, each with its text, action and armed timers."""
        tenant = await ctx.tenant_of(mcp_ctx)
        out = []
        for rd in await store.rules(tenant):
            m = runtime.engine.matcher(tenant, rd.name)
            out.append({**rd.summary(), "partitions": len(m.state) if m is not None else 0})
        return {"rules": out}

    @server.tool(title="Delete an event pattern rule", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False))
    @tool_errors
    async def cep_rule_delete(name: str, mcp_ctx: Context) -> dict[str, Any]:
        """Delete rule ``name`` (its armed timers too); it stops matching at once."""
        tenant = await ctx.tenant_of(mcp_ctx)
        await store.delete_rule(tenant, check_name(name))
        runtime.remove(tenant, name)
        return {"deleted": name}

    @server.tool(title="Test an event pattern rule against sample events", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    @tool_errors
    async def cep_rule_test(
        rule: str, events: list[dict[str, Any]], mcp_ctx: Context, until: float | str | None = None,
    ) -> dict[str, Any]:
        """Run ``rule`` over ``events`` (each {topic, data?, time?, id?}; time in unix seconds or
        ISO 8601, a missing time repeats the previous one) on a fresh matcher and return the
        matches — nothing is stored or published. ``until`` moves the clock on after the last
        event (seconds or ISO 8601), so absence deadlines and tumbling windows due by then fire."""
        parsed = parse_rule(rule)
        pairs = test_events(events, await ctx.tenant_of(mcp_ctx))
        end = None if until is None else _time_of(until, pairs[-1][1] if pairs else 0.0, len(pairs))
        matches = run_rule(parsed, pairs, until=end)
        out = [m.to_dict() for m in matches]
        for m in out:
            m["events"] = [e["id"] for e in m["events"]]  # the caller has the events; ids say which
        return {"kind": parsed.kind, "matches": out, "count": len(out)}
    return server
