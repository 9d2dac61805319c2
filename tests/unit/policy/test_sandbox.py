"""The sandbox: externally built modules (hand-written WAT here) that misbehave are stopped
and the decision is deny; modules that break the ABI are rejected before they are stored."""

from __future__ import annotations

import json

import pytest
import wasmtime

from vsm_mcp.policy import AbiError, Limits, PolicyRuntime, compile_policy, normalize

META = json.dumps(
    {
        "abi": 1,
        "name": "ext",
        "default": {"effect": "allow", "reason": "ok"},
        "rules": [{"id": "no", "effect": "deny", "reason": "said no"}],
        "strings": ["storage_delete"],
        "slots": [{"path": "tool.name", "type": "string"}],
    }
)


def module(evaluate_body: str, *, extra: str = "", memory: str = "1", exports: str | None = None) -> bytes:
    data = META.replace("\\", "\\\\").replace('"', '\\"')
    header = exports if exports is not None else f"""
      (func (export "vsm_abi_version") (result i32) (i32.const 1))
      (func (export "vsm_meta_ptr") (result i32) (i32.const 0))
      (func (export "vsm_meta_len") (result i32) (i32.const {len(META)}))
      (func (export "vsm_input_base") (result i32) (i32.const 1024))"""
    wat = f"""(module {extra}
      (memory (export "memory") {memory})
      (data (i32.const 0) "{data}")
      {header}
      (func (export "vsm_evaluate") (param $len i32) (result i32) {evaluate_body}))"""
    return wasmtime.wat2wasm(wat)


FACTS = normalize({"tool": {"name": "storage_delete"}})
LIMITS = Limits(fuel=200_000, memory_bytes=4 * 65536)


@pytest.fixture(params=["fast", "public"])
def runtime(request: pytest.FixtureRequest) -> PolicyRuntime:
    """Both call paths: direct C calls (the default) and wasmtime-py's public API."""
    return PolicyRuntime(LIMITS, fast_calls=request.param == "fast")


def test_a_well_behaved_external_module_follows_the_abi(runtime: PolicyRuntime) -> None:
    # deny (rule 1) when the interned id of tool.name is 0, i.e. the literal "storage_delete".
    body = "(if (result i32) (i32.eqz (i32.load (i32.const 1024))) (then (i32.const 3)) (else (i32.const 0)))"
    loaded = runtime.load(module(body))
    d = loaded.evaluate(FACTS)
    assert (d.effect, d.rule, d.reason, d.policy) == ("deny", "no", "said no", "ext")
    assert loaded.evaluate(normalize({"tool": {"name": "storage_get"}})).effect == "allow"


def test_an_infinite_loop_is_stopped_by_fuel_and_denied(runtime: PolicyRuntime) -> None:
    loaded = runtime.load(module("(loop $forever (br $forever)) (i32.const 0)"))
    d = loaded.evaluate(FACTS)
    assert d.effect == "deny" and d.rule == "sandbox"
    assert "fuel exhausted" in d.error
    # The runtime is still usable afterwards, with a fresh instance.
    assert loaded.evaluate(FACTS).error.startswith("fuel exhausted")


def test_growing_memory_past_the_limit_is_denied(runtime: PolicyRuntime) -> None:
    # Ask for 64 pages (4 MiB) with a 4-page limit: the grow fails, and using the memory it
    # did not get traps.
    body = "(drop (memory.grow (i32.const 64))) (i32.store (i32.const 4000000) (i32.const 1)) (i32.const 0)"
    d = runtime.load(module(body)).evaluate(FACTS)
    assert d.effect == "deny" and "trapped" in d.error and "out of bounds" in d.error
    # The grow itself fails inside the sandbox (memory.grow returns -1: rule 1 = deny here).
    check = "(if (result i32) (i32.eq (memory.grow (i32.const 64)) (i32.const -1)) (then (i32.const 3)) (else (i32.const 0)))"
    d = runtime.load(module(check)).evaluate(FACTS)
    assert (d.effect, d.rule, d.error) == ("deny", "no", "")
    # Growing within the limit is fine.
    ok = "(drop (memory.grow (i32.const 1))) (i32.store (i32.const 70000) (i32.const 1)) (i32.const 0)"
    assert runtime.load(module(ok)).evaluate(FACTS).effect == "allow"


def test_a_module_whose_initial_memory_exceeds_the_limit_is_rejected(runtime: PolicyRuntime) -> None:
    with pytest.raises(AbiError, match="instantiating the module"):
        runtime.load(module("(i32.const 0)", memory="64"))


def test_a_trap_is_a_deny_with_the_reason(runtime: PolicyRuntime) -> None:
    d = runtime.load(module("(unreachable)")).evaluate(FACTS)
    assert d.effect == "deny" and "trapped" in d.error and "unreachable" in d.error


@pytest.mark.parametrize(
    ("code", "expected"),
    [("5", "names no rule"), ("1", "effect bit disagrees with rule 'default'"), ("-1", "names no rule")],
)
def test_a_result_outside_the_abi_is_a_deny(runtime: PolicyRuntime, code: str, expected: str) -> None:
    d = runtime.load(module(f"(i32.const {code})")).evaluate(FACTS)
    assert d.effect == "deny" and expected in d.error


def test_a_module_with_imports_is_rejected_so_it_cannot_reach_files_or_network(runtime: PolicyRuntime) -> None:
    wasi = '(import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))'
    with pytest.raises(AbiError, match=r"imports wasi_snapshot_preview1\.fd_write; a policy module may import nothing"):
        runtime.load(module("(i32.const 0)", extra=wasi))


@pytest.mark.parametrize(
    ("exports", "expected"),
    [
        ("", "must export a function 'vsm_abi_version'"),
        (
            '(func (export "vsm_abi_version") (result i32) (i32.const 1))'
            '(func (export "vsm_meta_ptr") (result i32) (i32.const 0))'
            '(func (export "vsm_meta_len") (result i64) (i64.const 0))'
            '(func (export "vsm_input_base") (result i32) (i32.const 1024))',
            "export 'vsm_meta_len' has type () -> (i64); the ABI needs () -> (i32)",
        ),
    ],
)
def test_wrong_exports_are_rejected_with_a_clear_error(runtime: PolicyRuntime, exports: str, expected: str) -> None:
    with pytest.raises(AbiError) as info:
        runtime.load(module("(i32.const 0)", exports=exports))
    assert expected in str(info.value)


def test_bad_bytes_and_bad_metadata_are_rejected(runtime: PolicyRuntime) -> None:
    with pytest.raises(AbiError, match="not a valid WebAssembly module"):
        runtime.load(b"\0asm-nope")
    bad_version = module("(i32.const 0)").replace(b'"abi": 1', b'"abi": 9')
    with pytest.raises(AbiError, match="has abi 9; this host speaks abi 1"):
        runtime.load(bad_version)


def test_large_inputs_grow_memory_up_to_the_limit(runtime: PolicyRuntime) -> None:
    policy = compile_policy('default allow\ninput { p: string }\ndeny z when input.p ends_with "z"')
    loaded = runtime.load(policy.wasm)
    assert loaded.evaluate(normalize({"input": {"p": "a" * 100_000 + "z"}})).rule == "z"
    assert loaded.evaluate(normalize({"input": {"p": "short"}})).rule == "default"
    d = loaded.evaluate(normalize({"input": {"p": "a" * 300_000}}))
    assert d.effect == "deny" and "the limit is 262144" in d.error
