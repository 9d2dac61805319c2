"""Bad input always gets a clear error: arbitrary text never crashes the compiler, arbitrary
bytes never crash the module loader, arbitrary documents never crash a decision."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_mcp.policy import AbiError, PolicyError, PolicyRuntime, compile_policy, normalize

RUNTIME = PolicyRuntime()
TOKENS = st.sampled_from(
    ["default", "allow", "deny", "when", "and", "or", "not", "in", "contains", "starts_with", "(", ")", "[", "]",
     ",", "==", "<", "tool.name", "input.x", "context.hour", '"a"', "1", "-", "true", "r1", "input", "{", "}", ":",
     "string", "has", "count", "\n", "#", '"', "."]
)


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.text(max_size=60), st.lists(TOKENS, max_size=25).map(" ".join)))
def test_any_text_compiles_or_fails_with_a_positioned_error(source: str) -> None:
    try:
        compile_policy(source, file="fuzz.policy")
    except PolicyError as exc:
        assert exc.message.startswith("fuzz.policy:"), exc.message


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=64).map(lambda b: b"\0asm\x01\0\0\0" + b))
def test_any_bytes_load_or_are_rejected_as_abi_errors(blob: bytes) -> None:
    try:
        RUNTIME.load(blob)
    except AbiError as exc:
        assert exc.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)
LOADED = RUNTIME.load(
    compile_policy(
        'default allow\ninput { a.b: string, n: number, s: set }\n'
        'deny x when input.a.b contains "q" or input.n > 3 or input.s intersects tool.tags or "k" in principal.scopes'
    ).wasm
)


@settings(max_examples=300, deadline=None, database=None)
@given(st.dictionaries(st.sampled_from(["principal", "tool", "input"]), json_values, max_size=3))
def test_any_document_gets_a_decision(doc: dict[str, Any]) -> None:
    decision = LOADED.evaluate(normalize({k: v for k, v in doc.items() if isinstance(v, dict)}))
    assert decision.effect in ("allow", "deny") and decision.error == ""
