"""Host-side encoder: a decision document → the ABI's input record (see abi.py).

Strings are interned per evaluation (literal strings keep the ids the module was compiled
with), sets are written as ascending arrays of distinct string ids so the module can
binary-search and merge them.

This runs on every tool call, so for each module the encoder is generated as one straight-
line Python function over its slot list (no per-slot dispatch), ending in a single
``struct.pack``. The generated source contains no text from the module: paths and literals
are passed in as constants. What a fact reads as (absent / mistyped → zero value) must match
``facts.read_fact`` exactly; the differential tests hold the two together.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable, Mapping
from typing import Any

from vsm_mcp.policy.abi import SLOT_SIZE, PolicyMeta

MISSING: Any = object()
_FORMATS = {"string": "iiii", "number": "dii", "bool": "iiii", "set": "iiii"}
_SET_TYPES = (list, tuple, set, frozenset)


def lookup(node: Any, parts: tuple[str, ...]) -> Any:
    """The raw value at ``parts`` or ``MISSING`` (only mappings are walked)."""
    for part in parts:
        if type(node) is not dict and not isinstance(node, Mapping):
            return MISSING
        node = node.get(part, MISSING)
        if node is MISSING:
            return MISSING
    return node


def as_number(raw: Any) -> float | None:
    if type(raw) is float:
        return raw
    if type(raw) is bool or not isinstance(raw, int | float):
        return None
    try:
        return float(raw)
    except OverflowError:
        return None


def _fetch(i: int, parts: tuple[str, ...], roots: dict[str, int]) -> str:
    """Source reading slot ``i``: each root mapping once (made a dict, so every later read is
    one ``.get``), then the rest of the path."""
    if len(parts) == 1:
        return f"    v{i} = lookup(facts, K[{i}])\n"
    out = ""
    r = roots.get(parts[0])
    if r is None:
        r = roots[parts[0]] = len(roots)
        out += (
            f"    R{r} = facts.get(H{i}, MISSING)\n"
            f"    if type(R{r}) is not dict:\n"
            f"        R{r} = dict(R{r}) if isinstance(R{r}, Mapping) else EMPTY\n"
        )
    if len(parts) == 2:
        return out + f"    v{i} = R{r}.get(L{i}, MISSING)\n"
    return out + f"    v{i} = lookup(R{r}, K[{i}][1:])\n"


def _slot_source(i: int, ty: str, fetch: str, want_bytes: bool) -> str:
    """Source encoding slot ``i``. Interning is ``sd(text, len(ids))`` on a per-call copy of
    the literal table: literals keep their ids, a new string gets the next free id."""
    v = f"v{i}"
    if ty == "string":
        copy = (
            f"    b{i} = {v}.encode('utf-8', 'surrogatepass')\n"
            f"    c{i} = T + len(tail)\n    tail += b{i}\n    d{i} = len(b{i})\n"
        )
        return (
            fetch
            + f"    if type({v}) is str or isinstance({v}, str):\n        p{i} = 1\n"
            + f"    else:\n        p{i} = 0\n        {v} = ''\n"
            + f"    a{i} = sd({v}, len(table))\n"
            + (copy if want_bytes else f"    c{i} = d{i} = 0\n")
        )
    if ty == "number":
        return (
            fetch
            + f"    if type({v}) is float:\n        a{i} = {v}\n        p{i} = 1\n"
            + f"    elif type({v}) is int and -1e300 < {v} < 1e300:\n        a{i} = float({v})\n        p{i} = 1\n"
            + "    else:\n"
            + f"        a{i} = as_number({v})\n        p{i} = 0 if a{i} is None else 1\n"
            + f"        if a{i} is None:\n            a{i} = 0.0\n"
        )
    if ty == "bool":
        return fetch + f"    p{i} = 1 if ({v} is True or {v} is False) else 0\n    a{i} = 1 if {v} is True else 0\n"
    return (
        fetch
        + f"    d{i} = 0\n"
        + f"    if type({v}) in SET_TYPES or isinstance({v}, SET_TYPES):\n        p{i} = 1\n"
        + "        ids = []\n"
        + f"        for s in {v}:\n"
        + "            if type(s) is str or isinstance(s, str):\n"
        + "                ids.append(sd(s, len(table)))\n"
        + "            else:\n"
        + f"                p{i} = 0\n                break\n"
        + f"        if p{i} and ids:\n"
        + "            tail += ZEROS[-len(tail) % 4]\n"
        + "            ids = sorted(set(ids))\n"
        + f"            d{i} = len(ids)\n"
        + f"            a{i} = T + len(tail)\n"
        + "            tail += IDS(ids)\n"
        + f"        else:\n            a{i} = 0\n"
        + f"    else:\n        p{i} = 0\n        a{i} = 0\n"
    )


def _pack_args(i: int, ty: str) -> str:
    if ty == "number":
        return f"a{i}, 0, p{i}"
    if ty == "string":
        return f"a{i}, c{i}, d{i}, p{i}"
    if ty == "bool":
        return f"a{i}, 0, 0, p{i}"
    return f"a{i}, d{i}, 0, p{i}"


def _pack_ids_swapped(ids: list[int]) -> array[int]:
    arr = array("i", ids)
    arr.byteswap()  # the ABI is little-endian
    return arr


def _pack_ids(ids: list[int]) -> array[int]:
    return array("i", ids)


class Encoder:
    """Encodes decision documents for one module's slot list."""

    def __init__(self, meta: PolicyMeta) -> None:
        self.literals = {s: i for i, s in enumerate(meta.strings)}
        self.fixed = SLOT_SIZE * len(meta.slots)
        types = [s.type for s in meta.slots]
        layout = struct.Struct("<" + "".join(_FORMATS[t] for t in types))
        roots: dict[str, int] = {}
        body = "".join(
            _slot_source(i, s.type, _fetch(i, s.parts, roots), s.bytes) for i, s in enumerate(meta.slots)
        )
        args = ", ".join(_pack_args(i, t) for i, t in enumerate(types))
        source = (
            "def encode(facts, base):\n"
            "    if type(facts) is not dict:\n        facts = dict(facts) if isinstance(facts, Mapping) else EMPTY\n"
            "    table = LITERALS.copy()\n    sd = table.setdefault\n    tail = bytearray()\n    T = base + FIXED\n"
            + body
            + f"    return PACK({args}) + tail\n"
        )
        namespace: dict[str, Any] = {
            "K": tuple(s.parts for s in meta.slots),
            # Each slot's first and last path word as a plain global: no subscripts per call.
            **{f"H{i}": s.parts[0] for i, s in enumerate(meta.slots)},
            **{f"L{i}": s.parts[-1] for i, s in enumerate(meta.slots)},
            "LITERALS": self.literals,
            "ONLY_STR": frozenset({str}),
            "FIXED": self.fixed,
            "PACK": layout.pack,
            "ZEROS": (b"", b"\0", b"\0\0", b"\0\0\0"),
            "lookup": lookup,
            "MISSING": MISSING,
            "Mapping": Mapping,
            "EMPTY": {},
            "as_number": as_number,
            "SET_TYPES": _SET_TYPES,
            "IDS": _pack_ids if sys.byteorder == "little" else _pack_ids_swapped,
        }
        exec(compile(source, "<policy-encoder>", "exec"), namespace)  # noqa: S102 - our own generated code
        self.generated: Callable[[Mapping[str, Any], int], bytes] = namespace["encode"]
        self.source = source

    def encode(self, facts: Mapping[str, Any], base: int) -> bytes:
        """The bytes to write at ``base``; pointers inside are absolute addresses."""
        return self.generated(facts, base)
