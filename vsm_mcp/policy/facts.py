"""The facts a policy decides over, and how a value is read for a typed path.

A decision's input is one document with four roots::

    {"principal": {"tenant", "tenant_name", "key_id", "scopes"},
     "tool":      {"server", "name", "public_name", "tags", "annotations": {...}},
     "input":     {...the call's arguments...},
     "context":   {"time" (unix seconds or ISO 8601), "rate", "source"}}

``context.hour``, ``context.minute`` and ``context.weekday`` (ISO: 1 = Monday) are derived
from ``context.time`` in UTC. A fact that is missing or of another type than the policy
expects reads as the zero value of its type ("" / 0 / false / empty set) and ``has(...)``
is false for it. The interpreter and the WASM encoder both read facts through ``read_fact``
so they cannot disagree on this.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from vsm_mcp.errors import InvalidArguments
from vsm_mcp.hooks import CallInfo
from vsm_mcp.policy.ast import Type

ROOTS = ("principal", "tool", "input", "context")

BUILTIN_FACTS: dict[str, Type] = {
    "principal.tenant": "string",
    "principal.tenant_name": "string",
    "principal.key_id": "string",
    "principal.scopes": "set",
    "tool.server": "string",
    "tool.name": "string",
    "tool.public_name": "string",
    "tool.tags": "set",
    "tool.annotations.title": "string",
    "tool.annotations.readOnlyHint": "bool",
    "tool.annotations.destructiveHint": "bool",
    "tool.annotations.idempotentHint": "bool",
    "tool.annotations.openWorldHint": "bool",
    "context.time": "number",
    "context.hour": "number",
    "context.minute": "number",
    "context.weekday": "number",
    "context.rate": "number",
    "context.source": "string",
}

Value = str | float | bool | frozenset[str]
ZERO: dict[Type, Value] = {"string": "", "number": 0.0, "bool": False, "set": frozenset()}


def read_fact(facts: Mapping[str, Any], path: str, ty: Type) -> tuple[Value, bool]:
    """(value, present) of ``path`` read as ``ty``; absent or mistyped → (zero value, False)."""
    node: Any = facts
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return ZERO[ty], False
        node = node[part]
    return coerce(node, ty)


def coerce(raw: Any, ty: Type) -> tuple[Value, bool]:
    if ty == "string":
        return (raw, True) if isinstance(raw, str) else ("", False)
    if ty == "bool":
        return (raw, True) if isinstance(raw, bool) else (False, False)
    if ty == "number":
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return 0.0, False
        try:
            return float(raw), True
        except OverflowError:  # an int beyond float range is not a usable number
            return 0.0, False
    if isinstance(raw, list | tuple | set | frozenset) and all(isinstance(x, str) for x in raw):
        return frozenset(raw), True
    return frozenset(), False


def parse_time(value: Any) -> float:
    """Unix seconds from a number or an ISO 8601 string (naive = UTC)."""
    if isinstance(value, bool):
        raise InvalidArguments("context.time must be unix seconds or an ISO 8601 string, not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidArguments("context.time must be a finite number")
        return float(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidArguments(f"context.time {value!r} is not an ISO 8601 date-time") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    raise InvalidArguments("context.time must be unix seconds or an ISO 8601 string")


def normalize(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A decision document with derived context fields filled in (the JSON form used by
    ``policy_test`` and the CLI). Unknown roots are an error naming them."""
    unknown = [k for k in doc if k not in ROOTS]
    if unknown:
        raise InvalidArguments(f"unknown key {unknown[0]!r} in the policy input; expected {', '.join(ROOTS)}")
    out: dict[str, Any] = {k: doc.get(k) if isinstance(doc.get(k), Mapping) else {} for k in ROOTS}
    for k in ROOTS:
        if k in doc and not isinstance(doc[k], Mapping):
            raise InvalidArguments(f"policy input {k!r} must be an object")
    ctx = dict(out["context"])
    if "time" in ctx:
        ctx["time"] = parse_time(ctx["time"])
        moment = datetime.fromtimestamp(ctx["time"], UTC)
        ctx.setdefault("hour", float(moment.hour))
        ctx.setdefault("minute", float(moment.minute))
        ctx.setdefault("weekday", float(moment.isoweekday()))
    out["context"] = ctx
    return out


def facts_for_call(call: CallInfo, now: float, rate: float = 0.0) -> dict[str, Any]:
    """The decision document for one tool call in the dispatch pipeline."""
    p = call.principal
    return normalize(
        {
            "principal": {
                "tenant": p.tenant_id,
                "tenant_name": p.tenant_name,
                "key_id": p.key_id,
                "scopes": tuple(p.scopes),
            },
            "tool": {
                "server": call.server,
                "name": call.tool,
                "public_name": call.public_name,
                "tags": call.tags,
                "annotations": call.annotations,
            },
            "input": call.arguments,
            "context": {"time": now, "rate": rate, "source": call.source},
        }
    )
