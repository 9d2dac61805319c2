"""The fingerprint on real OpenCode bodies (benchmarks/data/llm_trace/opencode.jsonl): any edit of
any text a model reads — system prompt (working directory, date), user turn, tool call, tool
result, tool schema — gives a new key; what OpenCode varies that no model reads (``stream``,
``stream_options``, key order, JSON whitespace in tool-call arguments) does not."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from servers.llm_cdn.fingerprint import IGNORED_FIELDS, fingerprint

TRACE = Path(__file__).resolve().parents[3] / "benchmarks" / "data" / "llm_trace" / "opencode.jsonl"


def _requests() -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in TRACE.read_text(encoding="utf-8").splitlines() if line.strip()]
    header, rows = lines[0], lines[1:]
    out = []
    for row in rows:
        req = row["request"]
        for m in req["messages"]:
            if "ref" in m:
                m["content"] = header["system"][m.pop("ref")]
        if isinstance(req.get("tools"), dict):
            req["tools"] = header["tools"][req["tools"]["ref"]]
        out.append(req)
    return out


REQUESTS = _requests()


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every string a model reads; a tool call's ``arguments`` is entered as JSON."""
    if isinstance(obj, dict):
        return [p for k, v in obj.items() if not (not path and k in IGNORED_FIELDS)
                for p in (_leaves(json.loads(v), (*path, k, "$json")) if _json_arguments(k, v) else _leaves(v, (*path, k)))]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _leaves(v, (*path, i))]
    return [path] if isinstance(obj, str) and obj else []


def _json_arguments(key: str, value: Any) -> bool:
    """A tool call's ``arguments``: a string of JSON (a tool schema may have a property of that name)."""
    if key != "arguments" or not isinstance(value, str):
        return False
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def _edit(obj: Any, path: tuple[Any, ...], fn: Any) -> Any:
    if not path:
        return fn(obj)
    if path[0] == "$json":
        return json.dumps(_edit(json.loads(obj), path[1:], fn))
    if isinstance(obj, dict):
        return {**obj, path[0]: _edit(obj[path[0]], path[1:], fn)}
    return [(_edit(v, path[1:], fn) if i == path[0] else v) for i, v in enumerate(obj)]


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        obj = json.loads(obj) if p == "$json" else obj[p]
    return obj


def test_the_trace_has_the_shapes_under_test() -> None:
    roles = {m["role"] for r in REQUESTS for m in r["messages"]}
    assert {"system", "user", "assistant", "tool"} <= roles and any(r.get("tools") for r in REQUESTS)
    assert all(r.get("stream") is True for r in REQUESTS)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_edit_of_what_the_model_reads_gives_a_new_key(data: st.DataObject) -> None:
    req = data.draw(st.sampled_from(REQUESTS))
    regions: dict[str, list[tuple[Any, ...]]] = {}  # so edits do not all land in the 30 KB of tool schemas
    for p in _leaves(req):
        regions.setdefault(req["messages"][p[1]]["role"] if p[0] == "messages" else str(p[0]), []).append(p)
    path = data.draw(st.sampled_from(regions[data.draw(st.sampled_from(sorted(regions)))]))
    text: str = _get(req, path)
    i = data.draw(st.integers(0, len(text) - 1))
    ch = data.draw(st.characters(blacklist_categories=("Cs",)).filter(lambda c: c != text[i]))
    edited = _edit(req, path, lambda s: s[:i] + ch + s[i + 1:])
    assert fingerprint(edited) != fingerprint(req), path


def _reordered(obj: Any, rnd: random.Random) -> Any:
    if isinstance(obj, dict):
        items = list(obj.items())
        rnd.shuffle(items)
        return {k: (_respaced(v, rnd) if _json_arguments(k, v) else _reordered(v, rnd)) for k, v in items}
    if isinstance(obj, list):
        return [_reordered(v, rnd) for v in obj]
    return obj


def _respaced(arguments: str, rnd: random.Random) -> str:
    value = json.loads(arguments)
    return json.dumps(_reordered(value, rnd), indent=rnd.choice([None, 1, 2]))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(REQUESTS), st.randoms(use_true_random=False), st.booleans())
def test_what_no_model_reads_does_not_change_the_key(req: dict[str, Any], rnd: random.Random, stream: bool) -> None:
    variant = _reordered(req, rnd)
    variant["stream"] = stream
    if not stream:
        variant.pop("stream_options", None)
    assert fingerprint(variant) == fingerprint(req)
