"""What a match does besides ``cep.match.<rule>``: call a tool, or create and run a plan —
through the router's dispatcher (``ServerContext.tools``), as the rule's owner, so grants,
tenant policy, rate limits and audit apply exactly as if the owner had made the call.

An action is JSON, checked when the rule is put::

    {"tool": "<server>__<tool>", "arguments": {...}}
    {"plan": {...plan_create arguments: name, steps, goal...}, "run": true}

A plan is created, approved and (``run``, default true) started: ``planner__plan_create``,
``plan_approve``, ``plan_run``. When the durable spine runs in this process (``vsm-mcp serve``,
workers), an action is a DBOS workflow on the ``cep.actions`` queue whose steps are those calls,
so a match whose action was enqueued survives a crash; without it (a server run alone, tests
without the spine) the same calls run directly.

Strings in ``arguments`` / ``plan`` may use values from the match: a string that is exactly
``"${expr}"`` becomes the value of the CEL expression (any JSON type); ``${expr}`` inside a
longer string is replaced by its text. The expression sees ``rule``, ``key`` (list), ``time``,
``value``, ``events`` and ``first`` / ``last`` (event envelopes).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import mcp.types as mt
from dbos import DBOS

from servers.cep.cel import ERR, Expr
from servers.cep.matchers import Match
from servers.cep.store import RuleDef
from vsm_mcp.auth import Principal
from vsm_mcp.bus import Bus
from vsm_mcp.bus.events import Event
from vsm_mcp.durable import declare_queue, is_running
from vsm_mcp.durable import queue as durable_queue
from vsm_mcp.errors import InvalidArguments, UpstreamUnavailable

PLAN_CREATE, PLAN_APPROVE, PLAN_RUN = "planner__plan_create", "planner__plan_approve", "planner__plan_run"
QUEUE = "cep.actions"
declare_queue(QUEUE, worker_concurrency=8)
_TEMPLATE = re.compile(r"\$\{([^}]*)\}")

ToolCall = Callable[[Principal, str, dict[str, Any]], Awaitable[mt.CallToolResult]]


def check_action(action: dict[str, Any] | None) -> dict[str, Any]:
    """Validate an action's shape (and compile its templates) at put time; returns it."""
    if not action:
        return {}
    if not isinstance(action, dict):
        raise InvalidArguments("action must be an object: {tool, arguments} or {plan, run}")
    kinds = [k for k in ("tool", "plan") if k in action]
    if len(kinds) != 1:
        raise InvalidArguments("action needs exactly one of 'tool' or 'plan'")
    extra = set(action) - {"tool", "arguments", "plan", "run"}
    if extra:
        raise InvalidArguments(f"action: unknown field {sorted(extra)[0]!r}")
    if "tool" in action:
        if not isinstance(action["tool"], str) or not action["tool"]:
            raise InvalidArguments("action.tool must be a tool's public name, e.g. 'storage__storage_put'")
        if not isinstance(action.get("arguments", {}), dict):
            raise InvalidArguments("action.arguments must be an object")
    elif not isinstance(action["plan"], dict):
        raise InvalidArguments("action.plan must be an object (the arguments of planner__plan_create)")
    _walk(action.get("arguments", action.get("plan")), lambda s: [Expr(x) for x in _TEMPLATE.findall(s)])
    return action


def activation(m: Match) -> dict[str, Any]:
    return {"rule": m.rule, "key": m.key, "time": m.time, "value": m.value, "events": m.events,
            "first": m.events[0] if m.events else {}, "last": m.events[-1] if m.events else {}}


def render(value: Any, env: dict[str, Any]) -> Any:
    """``value`` with every ``${expr}`` filled from ``env``."""

    def one(s: str) -> Any:
        whole = _TEMPLATE.fullmatch(s)
        if whole:
            return Expr(whole.group(1)).value(env)
        return _TEMPLATE.sub(lambda mo: _text(Expr(mo.group(1)).raw(env)), s)

    return _walk(value, one)


def _text(v: Any) -> str:
    if v is ERR:
        return ""
    return v if isinstance(v, str) else json.dumps(v)


def _walk(value: Any, fn: Callable[[str], Any]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _walk(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, fn) for v in value]
    return value


def owner_principal(tenant: str, owner: dict[str, Any]) -> Principal:
    """The principal an action runs as: the rule's owner, with the scopes it had at put time."""
    return Principal(tenant_id=tenant, scopes=frozenset(owner.get("scopes", ())), key_id=str(owner.get("key_id", "")),
                     tenant_name=str(owner.get("tenant_name", "")))


def result_json(result: mt.CallToolResult) -> Any:
    if result.structured_content is not None:
        out = result.structured_content
        return out.get("result", out) if isinstance(out, dict) else out
    for block in result.content:
        text = getattr(block, "text", None)
        if text:
            try:
                return json.loads(text)
            except ValueError:
                return text
    return None


Call = Callable[[str, dict[str, Any], str, Any], Awaitable[Any]]  # (tenant, owner, tool, arguments) -> JSON


async def perform(call: Call, tenant: str, owner: dict[str, Any], action: dict[str, Any], env: dict[str, Any]) -> None:
    """The action's calls, in order (shared by the direct path and the workflow)."""
    if "tool" in action:
        await call(tenant, owner, action["tool"], render(action.get("arguments", {}), env))
        return
    plan = await call(tenant, owner, PLAN_CREATE, render(action["plan"], env))
    plan_id = plan.get("plan_id") if isinstance(plan, dict) else None
    if not plan_id:
        raise UpstreamUnavailable(f"{PLAN_CREATE} returned no plan id: {str(plan)[:200]}")
    await call(tenant, owner, PLAN_APPROVE, {"plan_id": plan_id})
    if action.get("run", True):
        await call(tenant, owner, PLAN_RUN, {"plan_id": plan_id})


class ActionRunner:
    """Runs a rule's action for a match (the runtime's action worker calls it)."""

    def __init__(self, call: ToolCall | None, bus: Bus | None = None) -> None:
        self.call = call
        self.bus = bus

    async def __call__(self, rule: RuleDef, m: Match) -> None:
        env = activation(m)
        if is_running():
            await durable_queue(QUEUE).enqueue_async(cep_action, rule.tenant, rule.name, rule.owner, rule.action, env)
            return
        await perform(self.call_json, rule.tenant, rule.owner, rule.action, env)

    async def call_json(self, tenant: str, owner: dict[str, Any], tool: str, arguments: Any) -> Any:
        if self.call is None:
            raise UpstreamUnavailable("CEP actions call tools through the router; this server runs without one")
        result = await self.call(owner_principal(tenant, owner), tool, arguments)
        if result.is_error:
            text = next((getattr(b, "text", "") for b in result.content if getattr(b, "text", "")), "tool error")
            raise UpstreamUnavailable(f"{tool} failed: {text[:300]}")
        return result_json(result)


# --- the durable path: DBOS workflows are module-level, so the process's runner is bound here --
_runner: ActionRunner | None = None


def bind(runner: ActionRunner) -> None:
    global _runner
    _runner = runner


def _bound() -> ActionRunner:
    if _runner is None:
        raise UpstreamUnavailable("the CEP server is not built in this process")
    return _runner


@DBOS.step()
async def _call_step(tenant: str, owner: dict[str, Any], tool: str, arguments: Any) -> Any:
    # The call runs in a task with a fresh context: DBOS keeps "inside a step" in a contextvar,
    # and an in-process tool (planner__plan_run enqueues a workflow) would inherit it and fail
    # DBOS's "not in a step" check. The tool call is a request like any client's; it owes the
    # step nothing but its result.
    call = _bound().call_json(tenant, owner, tool, arguments)
    return await asyncio.get_running_loop().create_task(call, context=contextvars.Context())


@DBOS.step()
async def _report_failure(tenant: str, rule: str, error: str) -> None:
    bus = _bound().bus
    if bus is not None:
        await bus.publish(Event(topic=f"cep.action.failed.{rule}", tenant=tenant, type="cep.action",
                                data={"rule": rule, "error": error[:500]}))


@DBOS.workflow()
async def cep_action(tenant: str, rule: str, owner: dict[str, Any], action: dict[str, Any], env: dict[str, Any]) -> None:
    """One match's action: each tool call a step, so a crash resumes after the last finished call."""
    try:
        await perform(_call_step, tenant, owner, action, env)
    except Exception as exc:  # reported like the direct path; the workflow ends (no retry storm)
        await _report_failure(tenant, rule, str(exc))
