"""What a match does besides ``cep.match.<rule>``: call a tool, or create and run a plan —
through the router's dispatcher (``ServerContext.tools``), as the rule's owner, so grants,
tenant policy, rate limits and audit apply exactly as if the owner had made the call.

An action is JSON, checked when the rule is put::

    {"tool": "<server>__<tool>", "arguments": {...}}
    {"plan": {...plan_create arguments...}, "run": true}

Strings in ``arguments`` / ``plan`` may use values from the match: a string that is exactly
``"${expr}"`` becomes the value of the CEL expression (any JSON type); ``${expr}`` inside a
longer string is replaced by its text. The expression sees ``rule``, ``key`` (list), ``time``,
``value``, ``events`` and ``first`` / ``last`` (event envelopes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import mcp.types as mt

from servers.cep.cel import ERR, Expr
from servers.cep.matchers import Match
from servers.cep.store import RuleDef
from vsm_mcp.auth import Principal
from vsm_mcp.errors import InvalidArguments, UpstreamUnavailable

PLAN_CREATE, PLAN_RUN = "planner__plan_create", "planner__plan_run"
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


def owner_principal(rule: RuleDef) -> Principal:
    o = rule.owner
    return Principal(tenant_id=rule.tenant, scopes=frozenset(o.get("scopes", ())), key_id=str(o.get("key_id", "")),
                     tenant_name=str(o.get("tenant_name", "")))


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


class ActionRunner:
    """Runs a rule's action for a match (the runtime's action worker calls it)."""

    def __init__(self, call: ToolCall | None) -> None:
        self.call = call

    async def __call__(self, rule: RuleDef, m: Match) -> None:
        if self.call is None:
            raise UpstreamUnavailable("CEP actions call tools through the router; this server runs without one")
        env = activation(m)
        principal = owner_principal(rule)
        action = rule.action
        if "tool" in action:
            await self._call(principal, action["tool"], render(action.get("arguments", {}), env))
            return
        plan = await self._call(principal, PLAN_CREATE, render(action["plan"], env))
        if action.get("run", True):
            plan_id = plan.get("id") or plan.get("plan_id") if isinstance(plan, dict) else None
            if not plan_id:
                raise UpstreamUnavailable(f"{PLAN_CREATE} returned no plan id: {str(plan)[:200]}")
            await self._call(principal, PLAN_RUN, {"plan_id": plan_id})

    async def _call(self, principal: Principal, tool: str, arguments: Any) -> Any:
        assert self.call is not None
        result = await self.call(principal, tool, arguments)
        if result.is_error:
            text = next((getattr(b, "text", "") for b in result.content if getattr(b, "text", "")), "tool error")
            raise UpstreamUnavailable(f"{tool} failed: {text[:300]}")
        return result_json(result)
