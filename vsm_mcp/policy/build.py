"""The toolchain in one call: source → parse → type check → WASM (+ the interpreter)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vsm_mcp.policy.ast import PolicyDoc, Type
from vsm_mcp.policy.checker import check
from vsm_mcp.policy.compiler import emit
from vsm_mcp.policy.interpreter import Interpreter
from vsm_mcp.policy.parser import parse


@dataclass(frozen=True)
class CompiledPolicy:
    """A policy ready to run: its AST and fact types (for the interpreter) and its module."""

    doc: PolicyDoc
    types: dict[str, Type]
    wat: str
    wasm: bytes
    sha256: str

    @property
    def name(self) -> str:
        return self.doc.name

    def interpreter(self) -> Interpreter:
        return Interpreter(self.doc, self.types)


def compile_policy(
    source: str,
    *,
    file: str = "<policy>",
    name: str | None = None,
    default_name: str = "policy",
    input_schema: Mapping[str, Any] | None = None,
) -> CompiledPolicy:
    """Compile policy source. Errors raise PolicyError subclasses whose message starts with
    ``file:line:col``. ``name`` overrides the ``policy "…"`` line (``default_name`` is used
    when there is neither); ``input_schema`` is a JSON
    Schema of the tool arguments the policy may read as ``input.*``."""
    doc = parse(source, file, name or default_name)
    if name:
        doc.name = name
    types = check(doc, input_schema)
    emitted = emit(doc, types)
    return CompiledPolicy(doc, types, emitted.wat, emitted.wasm, emitted.sha256)
