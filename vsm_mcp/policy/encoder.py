"""Host-side encoder: a decision document → the ABI's input record (see abi.py).

Strings are interned per evaluation (literal strings keep the ids the module was compiled
with), sets are written as ascending arrays of distinct string ids so the module can
binary-search and merge them.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from vsm_mcp.policy.abi import SLOT_SIZE, PolicyMeta
from vsm_mcp.policy.ast import Type
from vsm_mcp.policy.facts import ZERO, Value, coerce

_SLOT = struct.Struct("<iiii")
_NUM = struct.Struct("<dii")


def _read(facts: Mapping[str, Any], parts: tuple[str, ...], ty: Type) -> tuple[Value, bool]:
    node: Any = facts
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return ZERO[ty], False
        node = node[part]
    return coerce(node, ty)


class Encoder:
    """Encodes decision documents for one module's slot list."""

    def __init__(self, meta: PolicyMeta) -> None:
        self.plan = tuple((s.parts, s.type) for s in meta.slots)
        self.literals = {s: i for i, s in enumerate(meta.strings)}
        self.fixed = SLOT_SIZE * len(self.plan)

    def encode(self, facts: Mapping[str, Any], base: int) -> bytearray:
        """The bytes to write at ``base``; pointers inside are absolute addresses."""
        buf = bytearray(self.fixed)
        literals = self.literals
        dynamic: dict[str, int] = {}
        next_id = len(literals)

        def intern(s: str) -> int:
            nonlocal next_id
            found = literals.get(s)
            if found is None:
                found = dynamic.get(s)
                if found is None:
                    found = dynamic[s] = next_id
                    next_id += 1
            return found

        for i, (parts, ty) in enumerate(self.plan):
            value, present = _read(facts, parts, ty)
            off = i * SLOT_SIZE
            if ty == "string":
                assert isinstance(value, str)
                raw = value.encode("utf-8", "surrogatepass")
                _SLOT.pack_into(buf, off, intern(value), base + len(buf), len(raw), present)
                buf += raw
            elif ty == "number":
                _NUM.pack_into(buf, off, value, 0, present)
            elif ty == "bool":
                _SLOT.pack_into(buf, off, 1 if value else 0, 0, 0, present)
            else:
                assert isinstance(value, frozenset)
                ids = sorted(intern(s) for s in value)
                pad = -len(buf) % 4
                buf += bytes(pad)
                _SLOT.pack_into(buf, off, base + len(buf), len(ids), 0, present)
                buf += struct.pack(f"<{len(ids)}i", *ids)
        return buf
