"""Compiler: checked AST → WebAssembly text (WAT) following abi.py, assembled by wasmtime.

Layout of the emitted module's memory: the metadata JSON at 0, literal strings after it,
then the input record at ``vsm_input_base`` (16-byte aligned). Conditions compile to i32
expressions with short-circuit ``and``/``or``; deny rules are tested first, in source order,
then allow rules, then the default — the interpreter's order exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import wasmtime

from vsm_mcp.policy.abi import ABI_VERSION, SLOT_SIZE, PolicyMeta, RuleMeta, Slot
from vsm_mcp.policy.ast import (
    Bool,
    BoolOp,
    Call,
    Compare,
    Expr,
    Match,
    Not,
    Num,
    Path,
    PolicyDoc,
    SetLit,
    Str,
    Type,
)
from vsm_mcp.policy.diagnostics import PolicyError
from vsm_mcp.policy.wat_runtime import HELPERS

_F64_OPS = {"==": "f64.eq", "!=": "f64.ne", "<": "f64.lt", "<=": "f64.le", ">": "f64.gt", ">=": "f64.ge"}
PAGE = 65536


def _i32(v: int) -> str:
    return f"(i32.const {v})"


def _f64(v: float) -> str:
    return f"(f64.const {float(v).hex()})"


def _or_all(parts: list[str]) -> str:
    if not parts:
        return _i32(0)
    out = parts[0]
    for p in parts[1:]:
        out = f"(i32.or {out} {p})"
    return out


@dataclass(frozen=True)
class StrRef:
    """A string operand: WAT producing its id, address and byte length."""

    id: str
    ptr: str
    len: str


class _Emitter:
    def __init__(self, doc: PolicyDoc, types: dict[str, Type]) -> None:
        self.doc = doc
        self.types = types
        self.strings: dict[str, int] = {}
        self.slots: dict[str, int] = {}
        self.byte_paths: set[str] = set()  # string facts read byte-wise (prefix/suffix/contains)
        self._collect_rules()
        self.meta = PolicyMeta(
            name=doc.name,
            default=RuleMeta("default", doc.default.effect, doc.default.reason),
            rules=tuple(RuleMeta(r.id, r.effect, r.reason) for r in doc.rules),
            strings=tuple(self.strings),
            slots=tuple(Slot(p, types[p], p in self.byte_paths) for p in self.slots),
        )
        self.meta_bytes = self.meta.to_json().encode()
        self.lit_addr: dict[int, tuple[int, int]] = {}
        addr = len(self.meta_bytes)
        self.lit_blob = bytearray()
        for s, k in self.strings.items():
            raw = s.encode("utf-8", "surrogatepass")
            self.lit_addr[k] = (addr + len(self.lit_blob), len(raw))
            self.lit_blob += raw
        end = addr + len(self.lit_blob)
        self.base = (end + 15) // 16 * 16

    # --- first pass: literal strings and slots in order of appearance -------------------
    def _collect_rules(self) -> None:
        for rule in self.doc.rules:
            self._collect(rule.when)

    def _collect(self, e: Expr) -> None:
        if isinstance(e, Str):
            self.strings.setdefault(e.value, len(self.strings))
        elif isinstance(e, SetLit):
            for item in e.items:
                self._collect(item)
        elif isinstance(e, Path):
            self.slots.setdefault(e.dotted, len(self.slots))
        elif isinstance(e, Not):
            self._collect(e.operand)
        elif isinstance(e, BoolOp | Compare | Match):
            if isinstance(e, Match) and e.op in ("contains", "starts_with", "ends_with"):
                for side in (e.left, e.right):
                    if isinstance(side, Path):
                        self.byte_paths.add(side.dotted)
            self._collect(e.left)
            self._collect(e.right)
        elif isinstance(e, Call):
            self._collect(e.arg)

    # --- operands -------------------------------------------------------------------------
    def slot_addr(self, p: Path, field: int) -> int:
        return self.base + SLOT_SIZE * self.slots[p.dotted] + field

    def load(self, p: Path, field: int, kind: str = "i32") -> str:
        return f"({kind}.load {_i32(self.slot_addr(p, field))})"

    def string(self, e: Expr) -> StrRef:
        if isinstance(e, Str):
            k = self.strings[e.value]
            addr, n = self.lit_addr[k]
            return StrRef(_i32(k), _i32(addr), _i32(n))
        assert isinstance(e, Path)
        return StrRef(self.load(e, 0), self.load(e, 4), self.load(e, 8))

    def number(self, e: Expr) -> str:
        if isinstance(e, Num):
            return _f64(e.value)
        if isinstance(e, Path):
            return self.load(e, 0, "f64")
        assert isinstance(e, Call) and e.name == "count"
        if isinstance(e.arg, SetLit):
            return _f64(len({i.value for i in e.arg.items}))
        assert isinstance(e.arg, Path)
        return f"(f64.convert_i32_u {self.load(e.arg, 4)})"

    # --- boolean expressions -------------------------------------------------------------
    def cond(self, e: Expr) -> str:
        if isinstance(e, Bool):
            return _i32(int(e.value))
        if isinstance(e, Path):
            return self.load(e, 0)
        if isinstance(e, Not):
            return f"(i32.eqz {self.cond(e.operand)})"
        if isinstance(e, BoolOp):
            a, b = self.cond(e.left), self.cond(e.right)
            if e.op == "and":
                return f"(if (result i32) {a} (then {b}) (else {_i32(0)}))"
            return f"(if (result i32) {a} (then {_i32(1)}) (else {b}))"
        if isinstance(e, Compare):
            return self.compare(e)
        if isinstance(e, Match):
            return self.match(e)
        if isinstance(e, Call) and e.name == "has":
            assert isinstance(e.arg, Path)
            return self.load(e.arg, 12)
        raise PolicyError(f"cannot compile {type(e).__name__} as a condition", getattr(e, "pos", None))

    def kind(self, e: Expr) -> str:
        if isinstance(e, Str):
            return "string"
        if isinstance(e, Num) or (isinstance(e, Call) and e.name == "count"):
            return "number"
        if isinstance(e, Path):
            return self.types[e.dotted]
        return "bool"

    def compare(self, e: Compare) -> str:
        kind = self.kind(e.left)
        if kind == "number":
            return f"({_F64_OPS[e.op]} {self.number(e.left)} {self.number(e.right)})"
        if kind == "string":
            a, b = self.string(e.left).id, self.string(e.right).id
        else:
            a, b = self.cond(e.left), self.cond(e.right)
        return f"({'i32.eq' if e.op == '==' else 'i32.ne'} {a} {b})"

    def match(self, e: Match) -> str:
        if e.op == "not in":
            return f"(i32.eqz {self.member(e.left, e.right)})"
        if e.op == "in":
            return self.member(e.left, e.right)
        if e.op == "intersects":
            return self.intersects(e.left, e.right)
        if e.op == "contains" and self.kind(e.left) == "set":
            return self.member(e.right, e.left)
        a, b = self.string(e.left), self.string(e.right)
        helper = {"contains": "$contains", "starts_with": "$starts_with", "ends_with": "$ends_with"}[e.op]
        return f"(call {helper} {a.ptr} {a.len} {b.ptr} {b.len})"

    def member(self, item: Expr, coll: Expr) -> str:
        if self.kind(item) == "number":
            assert isinstance(coll, SetLit)
            x = self.number(item)
            return _or_all([f"(f64.eq {x} {_f64(float(i.value))})" for i in coll.items])
        sid = self.string(item).id
        if isinstance(coll, SetLit):
            ids = sorted({self.strings[str(i.value)] for i in coll.items})
            return _or_all([f"(i32.eq {sid} {_i32(k)})" for k in ids])
        assert isinstance(coll, Path)
        return f"(call $set_has {self.load(coll, 0)} {self.load(coll, 4)} {sid})"

    def intersects(self, a: Expr, b: Expr) -> str:
        if isinstance(a, SetLit) and isinstance(b, SetLit):
            return _i32(int(bool({i.value for i in a.items} & {i.value for i in b.items})))
        if isinstance(a, SetLit):
            a, b = b, a
        if isinstance(b, SetLit):
            assert isinstance(a, Path)
            ids = sorted({self.strings[str(i.value)] for i in b.items})
            return _or_all([f"(call $set_has {self.load(a, 0)} {self.load(a, 4)} {_i32(k)})" for k in ids])
        assert isinstance(a, Path) and isinstance(b, Path)
        return f"(call $intersects {self.load(a, 0)} {self.load(a, 4)} {self.load(b, 0)} {self.load(b, 4)})"

    # --- module ---------------------------------------------------------------------------
    def module(self) -> str:
        body: list[str] = []
        rules = list(enumerate(self.doc.rules, start=1))
        for effect in ("deny", "allow"):
            for index, rule in rules:
                if rule.effect == effect:
                    code = (index << 1) | (1 if effect == "deny" else 0)
                    body.append(f"    (if {self.cond(rule.when)} (then (return {_i32(code)})))")
        default_code = 1 if self.doc.default.effect == "deny" else 0
        pages = max(1, (self.base + PAGE - 1) // PAGE)
        return "\n".join(
            [
                "(module",
                f'  (memory (export "memory") {pages})',
                f'  (data (i32.const 0) "{_bytes(self.meta_bytes)}")',
                f'  (data (i32.const {len(self.meta_bytes)}) "{_bytes(bytes(self.lit_blob))}")',
                f'  (func (export "vsm_abi_version") (result i32) {_i32(ABI_VERSION)})',
                f'  (func (export "vsm_meta_ptr") (result i32) {_i32(0)})',
                f'  (func (export "vsm_meta_len") (result i32) {_i32(len(self.meta_bytes))})',
                f'  (func (export "vsm_input_base") (result i32) {_i32(self.base)})',
                HELPERS,
                '  (func (export "vsm_evaluate") (param $len i32) (result i32)',
                *body,
                f"    {_i32(default_code)})",
                ")",
            ]
        )


def _bytes(raw: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in raw)


@dataclass(frozen=True)
class Emitted:
    wat: str
    wasm: bytes
    meta: PolicyMeta

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.wasm).hexdigest()


def emit(doc: PolicyDoc, types: dict[str, Type]) -> Emitted:
    """Compile a checked policy to WAT and assemble it."""
    em = _Emitter(doc, types)
    wat = em.module()
    try:
        wasm = wasmtime.wat2wasm(wat)
    except wasmtime.WasmtimeError as exc:  # a compiler bug, not the operator's fault
        raise PolicyError(f"internal compiler error assembling policy {doc.name!r}: {exc}") from None
    return Emitted(wat, bytes(wasm), em.meta)
