"""Compact, deterministic serialization of a BeliefSet (full state or delta).

The same state always encodes to the same bytes: node ids are listed once, sorted, and
referenced by index; the context is canonical (compacted); entries are sorted by
(key, node, counter); JSON objects inside values have sorted keys. Layout (``v`` = 1)::

    {"v":1, "n":[node, …], "vv":[[node#, top], …], "cl":[[node#, [counter, …]], …],
     "e":[[key, node#, counter, wall_ms, logical, confidence, source, [evidence, …], value], …]}

``decode`` validates everything it reads (it comes from the network or the disk) and raises
``InvalidArguments`` naming what is wrong.
"""

from __future__ import annotations

import json
import math
from typing import Any

from vsm_mcp.crdt.beliefs import Belief, BeliefSet, Entry
from vsm_mcp.crdt.causal import CausalContext
from vsm_mcp.errors import InvalidArguments

VERSION = 1


def to_obj(state: BeliefSet) -> dict[str, Any]:
    """The JSON-ready object form (what goes into an event's ``data``)."""
    ctx = state.ctx
    names = sorted({*ctx.vv, *ctx.cloud, *(d[0] for d in state.entries)})
    idx = {n: i for i, n in enumerate(names)}
    entries = sorted(state.entries.values(), key=lambda e: (e.key, e.dot[0], e.dot[1]))
    return {
        "v": VERSION,
        "n": names,
        "vv": [[idx[n], top] for n, top in sorted(ctx.vv.items())],
        "cl": [[idx[n], sorted(s)] for n, s in sorted(ctx.cloud.items())],
        "e": [
            [
                e.key, idx[e.dot[0]], e.dot[1], e.stamp[0], e.stamp[1],
                e.belief.confidence, e.belief.source, list(e.belief.evidence), e.belief.value,
            ]
            for e in entries
        ],
    }


def encode(state: BeliefSet) -> bytes:
    """Deterministic compact JSON bytes."""
    return dumps(to_obj(state))


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False).encode()


def decode(data: bytes | str) -> BeliefSet:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArguments(f"belief state is not valid JSON: {exc}") from None
    return from_obj(obj)


def _fail(what: str) -> InvalidArguments:
    return InvalidArguments(f"malformed belief state: {what}")


def _int(v: Any, what: str, low: int = 0) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise _fail(f"{what} must be an integer ≥ {low}")
    return v


def from_obj(obj: Any) -> BeliefSet:
    """Rebuild a state from ``to_obj`` output, validating every field."""
    if not isinstance(obj, dict) or obj.get("v") != VERSION:
        raise _fail(f"expected an object with v={VERSION}")
    names = obj.get("n", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise _fail("n must be a list of node ids")

    def node(i: Any) -> str:
        i = _int(i, "node index")
        if i >= len(names):
            raise _fail(f"node index {i} out of range")
        return str(names[i])

    vv: dict[str, int] = {}
    for item in _list(obj, "vv"):
        if not isinstance(item, list) or len(item) != 2:
            raise _fail("vv items must be [node#, counter]")
        vv[node(item[0])] = _int(item[1], "vv counter", 1)
    cloud: list[tuple[str, int]] = []
    for item in _list(obj, "cl"):
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], list):
            raise _fail("cl items must be [node#, [counter, …]]")
        n = node(item[0])
        cloud.extend((n, _int(c, "cloud counter", 1)) for c in item[1])
    ctx = CausalContext(vv, cloud)
    entries = [_entry(item, node) for item in _list(obj, "e")]
    if len({e.dot for e in entries}) != len(entries):
        raise _fail("two entries share a dot")
    return BeliefSet.of(entries, ctx)


def _list(obj: dict[str, Any], name: str) -> list[Any]:
    v = obj.get(name, [])
    if not isinstance(v, list):
        raise _fail(f"{name} must be a list")
    return v


def _entry(item: Any, node: Any) -> Entry:
    if not isinstance(item, list) or len(item) != 9:
        raise _fail("entries must be [key, node#, counter, wall, logical, confidence, source, evidence, value]")
    key, n, counter, wall, logical, confidence, source, evidence, value = item
    if not isinstance(key, str):
        raise _fail("entry key must be a string")
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool) or not math.isfinite(confidence):
        raise _fail(f"confidence of {key!r} must be a number")
    if not isinstance(evidence, list):
        raise _fail(f"evidence of {key!r} must be a list")
    try:
        belief = Belief(value, float(confidence), source, tuple(evidence))
    except ValueError as exc:
        raise _fail(f"{key!r}: {exc}") from None
    dot = (node(n), _int(counter, "entry counter", 1))
    return Entry(key, dot, (_int(wall, "wall"), _int(logical, "logical")), belief)
