"""Plan creation (validation against the router's catalog), S4 tool selection from a goal, and
the aggregation of a finished plan's results.

The planner knows tools only through the router (``ctx.tools``): ``describe_tools`` for the
schemas, annotations and grants of the tools a plan names, ``find_tools`` for the registry
search behind plan_from_goal — never by importing another server.
"""

from __future__ import annotations

import re
from typing import Any

from servers.planner.dag import Step, sinks
from vsm_mcp.auth import Principal
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import Forbidden, InvalidArguments, NotFound


async def describe(ctx: ServerContext, principal: Principal, names: list[str]) -> dict[str, Any]:
    """``{name: {input_schema, idempotent, available, allowed} | None}`` from the router."""
    result = await ctx.tools.call(principal, "describe_tools", {"names": names}, source="planner")
    return dict((result.structured_content or {}).get("tools", {}))


async def find(ctx: ServerContext, principal: Principal, query: str, limit: int) -> list[dict[str, Any]]:
    result = await ctx.tools.call(principal, "find_tools", {"query": query, "limit": limit}, source="planner")
    return list((result.structured_content or {}).get("tools", []))


def check_arguments(step: Step, schema: dict[str, Any]) -> None:
    """Arguments against the tool's input schema; a ``$from`` placeholder stands for any value."""
    from jsonschema import Draft202012Validator  # only plan checks need it, not a router's start-up
    from jsonschema.validators import validator_for

    cls = validator_for(schema, default=Draft202012Validator)
    holes = [ref.where for ref in step.refs]
    for err in sorted(cls(schema).iter_errors(step.arguments), key=lambda e: list(map(str, e.absolute_path))):
        path = tuple(err.absolute_path)
        if any(path[: len(h)] == h for h in holes):
            continue
        at = "/" + "/".join(map(str, path))
        raise InvalidArguments(f"step {step.id!r} arguments for {step.tool} at {at}: {err.message}")


async def check_tools(ctx: ServerContext, principal: Principal, steps: list[Step]) -> dict[str, bool]:
    """Every router step's tool exists, may be called by ``principal`` and gets valid arguments.
    Returns ``{tool: idempotent}``."""
    names = sorted({s.tool for s in steps if s.run == "router"})
    if not names:
        return {}
    info = await describe(ctx, principal, names)
    for s in steps:
        if s.run != "router":
            continue
        tool = info.get(s.tool)
        if tool is None:
            raise NotFound(f"step {s.id!r} names unknown tool {s.tool!r} (find one with find_tools)",
                           data={"step": s.id, "tool": s.tool})
        if not tool.get("allowed", True):
            raise Forbidden(f"step {s.id!r}: this key may not call {s.tool!r}", data={"step": s.id, "tool": s.tool})
        check_arguments(s, tool.get("input_schema") or {"type": "object"})
    return {n: bool((info.get(n) or {}).get("idempotent")) for n in names}


# --- S4: a draft plan from a goal ---------------------------------------------------------------
CLAUSE_SPLIT = re.compile(r"\s*(?:;|\bthen\b|\band then\b|\n)\s*", re.I)


def clauses(goal: str, max_steps: int) -> list[str]:
    parts = [p.strip(" ,.") for p in CLAUSE_SPLIT.split(goal) if p and p.strip(" ,.")]
    return parts[:max_steps] or [goal.strip()]


def skeleton(tool: dict[str, Any], clause: str) -> tuple[dict[str, Any], list[str]]:
    """Arguments a step can take from its clause: the one required string parameter gets the
    clause text; every other required parameter is reported missing."""
    schema = tool.get("input_schema") or {}
    props: dict[str, Any] = schema.get("properties") or {}
    required = [r for r in schema.get("required") or [] if isinstance(r, str)]
    strings = [r for r in required if (props.get(r) or {}).get("type") == "string"]
    args: dict[str, Any] = {}
    if len(strings) == 1:
        args[strings[0]] = clause
    return args, [r for r in required if r not in args]


async def propose(ctx: ServerContext, principal: Principal, goal: str, max_steps: int) -> dict[str, Any]:
    """One step per clause of the goal (split on ';', 'then', new lines), each the best match of
    the registry's search; steps run in the goal's order."""
    steps: list[dict[str, Any]] = []
    candidates: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    for i, clause in enumerate(clauses(goal, max_steps)):
        hits = await find(ctx, principal, clause, 3)
        candidates.append({"clause": clause, "tools": [{k: h.get(k) for k in ("name", "score", "description")} for h in hits]})
        if not hits:
            missing.append({"step": f"s{i + 1}", "clause": clause, "reason": "no tool matches"})
            continue
        args, absent = skeleton(hits[0], clause)
        sid = f"s{i + 1}"
        steps.append({"id": sid, "tool": hits[0]["name"], "arguments": args,
                      "after": [steps[-1]["id"]] if steps else []})
        if absent:
            missing.append({"step": sid, "clause": clause, "arguments": absent})
    return {"goal": goal, "steps": steps, "candidates": candidates, "missing": missing}


# --- aggregation ------------------------------------------------------------------------------
def aggregate(plan: Any, rows: list[Any], steps: list[Step]) -> dict[str, Any]:
    """A finished plan's results: every step's value (structured, else text), the outputs of the
    steps nothing runs after, failures, and counts."""
    def value(r: Any) -> Any:
        res = r.result or {}
        return res.get("structured") if res.get("structured") is not None else res.get("text")

    by_id = {r.step_id: r for r in rows}
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    started = [r.started_at for r in rows if r.started_at]
    ended = [r.ended_at for r in rows if r.ended_at]
    return {
        "plan_id": plan.id, "state": plan.state, "trace_id": plan.trace_id,
        "outputs": {sid: value(by_id[sid]) for sid in sinks(steps) if by_id[sid].state == "succeeded"},
        "results": {r.step_id: value(r) for r in rows if r.state == "succeeded"},
        "errors": {r.step_id: r.error for r in rows if r.state in ("failed", "uncertain")},
        "counts": counts,
        "seconds": round((max(ended) - min(started)).total_seconds(), 3) if started and ended else None,
    }
