"""A plan's steps as a DAG: parsing, validation and the order the engine reserves steps in.

A step is ``{"id", "tool", "arguments", "after": [ids], "retry"?, "timeout_s"?, "run"?}``.
``run: "router"`` (default) — the engine calls ``tool`` through the router's dispatcher;
``run: "agent"`` — an agent claims the step (step_claim) and reports its result; its ``tool``
is the label agents filter on and is not looked up in the registry.

An argument value may come from an earlier step's result::

    {"$from": "<step id>", "path": "structured.items[0].id"}

The referenced step must run before (be in ``after``, directly or transitively). The path
walks the step's result: ``structured`` (the tool's structured content), ``text`` (its text
content joined), ``content`` (the raw content blocks). No path = the whole result.

Every problem is reported as one ``InvalidArguments`` line naming the step and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from vsm_mcp.errors import InvalidArguments

STEP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
PATH_TOKEN = re.compile(r"\.?([A-Za-z0-9_-]+)|\[(\d+)\]")
STEP_KEYS = {"id", "tool", "arguments", "after", "retry", "timeout_s", "run"}
RETRY_KEYS = {"attempts", "backoff_s"}


@dataclass(frozen=True)
class Ref:
    """A ``$from`` placeholder found at ``where`` (a JSON pointer into the step's arguments)."""

    step: str
    path: tuple[str | int, ...]
    where: tuple[str | int, ...]


@dataclass
class Step:
    id: str
    tool: str
    arguments: dict[str, Any]
    after: list[str]
    run: str = "router"
    attempts: int = 1
    backoff_s: float = 0.5
    timeout_s: float | None = None
    refs: list[Ref] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "tool": self.tool, "arguments": self.arguments, "after": self.after}
        if self.run != "router":
            out["run"] = self.run
        if self.attempts != 1 or self.backoff_s != 0.5:
            out["retry"] = {"attempts": self.attempts, "backoff_s": self.backoff_s}
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        return out


def parse_path(text: str, where: str) -> tuple[str | int, ...]:
    """``structured.items[0].id`` → ("structured", "items", 0, "id")."""
    out: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = PATH_TOKEN.match(text, pos)
        if m is None or (pos == 0 and text.startswith(".")):
            raise InvalidArguments(f"{where}: bad path {text!r} (use e.g. 'structured.items[0].id')")
        out.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    return tuple(out)


def _find_refs(value: Any, where: tuple[str | int, ...], label: str) -> Iterator[Ref]:
    if isinstance(value, dict):
        if "$from" in value:
            extra = set(value) - {"$from", "path"}
            src, path = value.get("$from"), value.get("path", "")
            at = f"{label} argument at /{'/'.join(map(str, where))}"
            if extra:
                raise InvalidArguments(f"{at}: a reference has only '$from' and 'path' (found {sorted(extra)[0]!r})")
            if not isinstance(src, str) or not isinstance(path, str):
                raise InvalidArguments(f"{at}: '$from' and 'path' must be strings")
            yield Ref(src, parse_path(path, at) if path else (), where)
            return
        for k, v in value.items():
            yield from _find_refs(v, (*where, k), label)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _find_refs(v, (*where, i), label)


def _parse_step(raw: Any, index: int) -> Step:
    if not isinstance(raw, dict):
        raise InvalidArguments(f"steps[{index}] must be an object with 'id' and 'tool'")
    sid = raw.get("id")
    if not isinstance(sid, str) or not STEP_ID.match(sid):
        raise InvalidArguments(f"steps[{index}].id must be 1-64 characters of A-Z a-z 0-9 _ - (got {sid!r})")
    label = f"step {sid!r}"
    unknown = sorted(set(raw) - STEP_KEYS)
    if unknown:
        raise InvalidArguments(f"{label}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(STEP_KEYS))})")
    tool = raw.get("tool")
    if not isinstance(tool, str) or not TOOL_NAME.match(tool):
        raise InvalidArguments(f"{label}: 'tool' must be a tool name like 'storage__storage_get' (got {tool!r})")
    run = raw.get("run", "router")
    if run not in ("router", "agent"):
        raise InvalidArguments(f"{label}: 'run' must be 'router' or 'agent' (got {run!r})")
    args = raw.get("arguments", {})
    if not isinstance(args, dict):
        raise InvalidArguments(f"{label}: 'arguments' must be an object")
    after = raw.get("after", [])
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise InvalidArguments(f"{label}: 'after' must be a list of step ids")
    step = Step(sid, tool, args, list(dict.fromkeys(after)), run)
    retry = raw.get("retry")
    if retry is not None:
        if not isinstance(retry, dict) or set(retry) - RETRY_KEYS:
            raise InvalidArguments(f"{label}: 'retry' must be {{\"attempts\": 1-10, \"backoff_s\": seconds}}")
        attempts, backoff = retry.get("attempts", 1), retry.get("backoff_s", 0.5)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 10:
            raise InvalidArguments(f"{label}: retry.attempts must be an integer 1-10")
        if isinstance(backoff, bool) or not isinstance(backoff, int | float) or not 0 <= backoff <= 300:
            raise InvalidArguments(f"{label}: retry.backoff_s must be a number of seconds 0-300")
        step.attempts, step.backoff_s = attempts, float(backoff)
    timeout = raw.get("timeout_s")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 86_400:
            raise InvalidArguments(f"{label}: timeout_s must be a number of seconds > 0 (at most 86400)")
        step.timeout_s = float(timeout)
    step.refs = list(_find_refs(args, (), label))
    return step


def parse_steps(raw: Any, max_steps: int) -> list[Step]:
    """Parse and check the structure: ids, references, cycles, size. Tools are checked by the caller."""
    if not isinstance(raw, list) or not raw:
        raise InvalidArguments("'steps' must be a non-empty list of step objects")
    if len(raw) > max_steps:
        raise InvalidArguments(f"plan has {len(raw)} steps; at most {max_steps} are allowed (VSM_PLAN_MAX_STEPS)")
    steps = [_parse_step(s, i) for i, s in enumerate(raw)]
    by_id: dict[str, Step] = {}
    for s in steps:
        if s.id in by_id:
            raise InvalidArguments(f"step id {s.id!r} is used twice")
        by_id[s.id] = s
    for s in steps:
        for dep in s.after:
            if dep not in by_id:
                raise InvalidArguments(f"step {s.id!r} runs after unknown step {dep!r}")
            if dep == s.id:
                raise InvalidArguments(f"plan has a cycle: {s.id} -> {s.id}")
    order = topo_order(steps)
    ancestors = _ancestors(order)
    for s in steps:
        for ref in s.refs:
            at = f"step {s.id!r} argument at /{'/'.join(map(str, ref.where))}"
            if ref.step not in by_id:
                raise InvalidArguments(f"{at} reads from unknown step {ref.step!r}")
            if ref.step not in ancestors[s.id]:
                raise InvalidArguments(f"{at} reads from step {ref.step!r}, which it does not run after (add it to 'after')")
            if ref.path and ref.path[0] not in ("structured", "text", "content"):
                raise InvalidArguments(f"{at}: a path starts with structured, text or content (got {ref.path[0]!r})")
    return order


def topo_order(steps: list[Step]) -> list[Step]:
    """Kahn's order, stable in the given order; a cycle raises naming its steps."""
    by_id = {s.id: s for s in steps}
    indegree = {s.id: len(s.after) for s in steps}
    children: dict[str, list[str]] = {s.id: [] for s in steps}
    for s in steps:
        for dep in s.after:
            children[dep].append(s.id)
    ready = [s.id for s in steps if indegree[s.id] == 0]
    out: list[Step] = []
    while ready:
        sid = ready.pop(0)
        out.append(by_id[sid])
        for child in children[sid]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if len(out) < len(steps):
        raise InvalidArguments(f"plan has a cycle: {' -> '.join(_cycle(steps, {s.id for s in out}))}")
    return out


def _cycle(steps: list[Step], acyclic: set[str]) -> list[str]:
    """One cycle among the steps Kahn's algorithm could not order, for the error line."""
    after = {s.id: [d for d in s.after if d not in acyclic] for s in steps if s.id not in acyclic}
    node = next(iter(after))
    seen: list[str] = []
    while node not in seen:
        seen.append(node)
        node = after[node][0]
    return [*seen[seen.index(node):], node][::-1]


def _ancestors(order: list[Step]) -> dict[str, set[str]]:
    anc: dict[str, set[str]] = {}
    for s in order:
        acc: set[str] = set()
        for dep in s.after:
            acc.add(dep)
            acc |= anc[dep]
        anc[s.id] = acc
    return anc


def sinks(steps: list[Step]) -> list[str]:
    """Steps nothing runs after: the plan's outputs."""
    used = {d for s in steps for d in s.after}
    return [s.id for s in steps if s.id not in used]


def resolve(arguments: Any, results: dict[str, Any]) -> Any:
    """``arguments`` with every ``$from`` replaced by the value it points at in ``results``."""
    if isinstance(arguments, dict):
        if "$from" in arguments:
            value = results[arguments["$from"]]
            path = arguments.get("path", "")
            for token in parse_path(path, "reference") if path else ():
                try:
                    value = value[token]
                except (KeyError, IndexError, TypeError):
                    raise InvalidArguments(
                        f"reference to step {arguments['$from']!r}: path {path!r} does not exist in its result"
                    ) from None
            return value
        return {k: resolve(v, results) for k, v in arguments.items()}
    if isinstance(arguments, list):
        return [resolve(v, results) for v in arguments]
    return arguments
