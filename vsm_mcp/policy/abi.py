"""The policy ABI (version 1): what a WebAssembly policy module exports and how the host
lays out a decision's input in its linear memory. docs/policies.md is the readable version.

Exports (nothing may be imported)::

    memory                          the module's linear memory
    vsm_abi_version() -> i32        1
    vsm_meta_ptr() -> i32           address of the metadata JSON (UTF-8) in memory
    vsm_meta_len() -> i32           its length in bytes
    vsm_input_base() -> i32         16-byte aligned address where the host writes the input
    vsm_evaluate(len: i32) -> i32   the decision: (rule_index << 1) | (1 if deny else 0);
                                    rule_index 0 = the default, i = meta.rules[i - 1]

Input record at ``base``: one 16-byte slot per ``meta.slots`` entry, then variable data::

    string  i32 id, i32 ptr, i32 len (UTF-8 bytes), i32 present   (ptr = len = 0 when the
                                                             slot says "bytes": false)
    number  f64 value,       i32 0,                 i32 present
    bool    i32 0|1,         i32 0, i32 0,          i32 present
    set     i32 ptr, i32 count, i32 0,              i32 present   (count distinct i32 ids, ascending)

String ids: ``meta.strings[k]`` has id ``k``; every other string of one evaluation gets a
distinct id ≥ len(meta.strings), and equal strings get equal ids. Little-endian throughout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from vsm_mcp.policy.ast import Effect, Type
from vsm_mcp.policy.diagnostics import AbiError
from vsm_mcp.policy.facts import ROOTS

ABI_VERSION = 1
SLOT_SIZE = 16
MAX_SLOTS = 4096
MAX_RULES = 65536

# export name -> (params, results); "memory" is checked separately.
FUNC_EXPORTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "vsm_abi_version": ((), ("i32",)),
    "vsm_meta_ptr": ((), ("i32",)),
    "vsm_meta_len": ((), ("i32",)),
    "vsm_input_base": ((), ("i32",)),
    "vsm_evaluate": (("i32",), ("i32",)),
}


@dataclass(frozen=True)
class RuleMeta:
    id: str
    effect: Effect
    reason: str


@dataclass(frozen=True)
class Slot:
    path: str
    type: Type
    bytes: bool = True  # string slots: False = the module compares ids only, skip the UTF-8 copy

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("."))


@dataclass(frozen=True)
class PolicyMeta:
    """The metadata document a module carries: rules (for reasons), literal strings and slots."""

    name: str
    default: RuleMeta
    rules: tuple[RuleMeta, ...]
    strings: tuple[str, ...]
    slots: tuple[Slot, ...]

    def to_json(self) -> str:
        doc = {
            "abi": ABI_VERSION,
            "name": self.name,
            "default": {"effect": self.default.effect, "reason": self.default.reason},
            "rules": [{"id": r.id, "effect": r.effect, "reason": r.reason} for r in self.rules],
            "strings": list(self.strings),
            "slots": [_slot_json(s) for s in self.slots],
        }
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes) -> PolicyMeta:
        """Parse and validate; anything off raises AbiError naming the field."""
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AbiError(f"policy metadata is not UTF-8 JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise AbiError("policy metadata must be a JSON object")
        if doc.get("abi") != ABI_VERSION:
            raise AbiError(f"policy metadata has abi {doc.get('abi')!r}; this host speaks abi {ABI_VERSION}")
        name = doc.get("name", "")
        if not isinstance(name, str):
            raise AbiError("policy metadata 'name' must be a string")
        default = _rule(doc.get("default"), "default", default=True)
        rules_raw = _list(doc, "rules", MAX_RULES)
        rules = tuple(_rule(r, f"rules[{i}]") for i, r in enumerate(rules_raw))
        strings_raw = _list(doc, "strings", 1 << 20)
        if not all(isinstance(s, str) for s in strings_raw) or len(set(strings_raw)) != len(strings_raw):
            raise AbiError("policy metadata 'strings' must be distinct strings")
        slots = tuple(_slot(s, i) for i, s in enumerate(_list(doc, "slots", MAX_SLOTS)))
        return cls(name, default, rules, tuple(strings_raw), slots)


def _slot_json(s: Slot) -> dict[str, Any]:
    out: dict[str, Any] = {"path": s.path, "type": s.type}
    if s.type == "string" and not s.bytes:
        out["bytes"] = False
    return out


def _list(doc: dict[str, Any], key: str, limit: int) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list) or len(value) > limit:
        raise AbiError(f"policy metadata {key!r} must be a list of at most {limit} entries")
    return value


def _rule(raw: Any, where: str, default: bool = False) -> RuleMeta:
    if not isinstance(raw, dict) or raw.get("effect") not in ("allow", "deny"):
        raise AbiError(f"policy metadata {where} must be an object with effect 'allow' or 'deny'")
    rid = "default" if default else raw.get("id")
    reason = raw.get("reason", "")
    if not isinstance(rid, str) or not rid or not isinstance(reason, str):
        raise AbiError(f"policy metadata {where} needs a string 'id' and 'reason'")
    return RuleMeta(rid, cast(Effect, raw["effect"]), reason)


def _slot(raw: Any, i: int) -> Slot:
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
        raise AbiError(f"policy metadata slots[{i}] must be an object with a string 'path'")
    path, ty = raw["path"], raw.get("type")
    if path.split(".")[0] not in ROOTS or "" in path.split("."):
        raise AbiError(f"policy metadata slots[{i}] path {path!r} must start with one of {', '.join(ROOTS)}")
    if ty not in ("string", "number", "bool", "set"):
        raise AbiError(f"policy metadata slots[{i}] type {ty!r} must be string, number, bool or set")
    want_bytes = raw.get("bytes", True)
    if not isinstance(want_bytes, bool):
        raise AbiError(f"policy metadata slots[{i}] 'bytes' must be true or false")
    return Slot(path, cast(Type, ty), want_bytes)


def decode_result(code: int, meta: PolicyMeta) -> RuleMeta:
    """The rule a ``vsm_evaluate`` result names; an impossible value raises AbiError."""
    index, deny = code >> 1, code & 1
    if code < 0 or index > len(meta.rules):
        raise AbiError(f"vsm_evaluate returned {code}, which names no rule (the policy has {len(meta.rules)})")
    rule = meta.default if index == 0 else meta.rules[index - 1]
    if (rule.effect == "deny") != bool(deny):
        raise AbiError(f"vsm_evaluate returned {code}: effect bit disagrees with rule {rule.id!r} ({rule.effect})")
    return rule
