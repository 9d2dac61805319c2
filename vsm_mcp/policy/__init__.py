"""The policy language: rules over principal, tool, input and context, compiled to
WebAssembly and run sandboxed in wasmtime. See docs/policies.md.

    compile_policy(source) -> CompiledPolicy      parse, type check, emit WASM
    PolicyRuntime().load(wasm).evaluate(facts)     sandboxed decision (fail closed)
    CompiledPolicy.interpreter().explain(facts)    reference semantics + which rules fired
"""

from vsm_mcp.policy.build import CompiledPolicy, compile_policy
from vsm_mcp.policy.decision import Decision
from vsm_mcp.policy.diagnostics import AbiError, PolicyError, PolicySyntaxError, PolicyTypeError
from vsm_mcp.policy.facts import facts_for_call, normalize
from vsm_mcp.policy.runtime import Limits, LoadedPolicy, PolicyRuntime

__all__ = [
    "AbiError",
    "CompiledPolicy",
    "Decision",
    "Limits",
    "LoadedPolicy",
    "PolicyError",
    "PolicyRuntime",
    "PolicySyntaxError",
    "PolicyTypeError",
    "compile_policy",
    "facts_for_call",
    "normalize",
]
