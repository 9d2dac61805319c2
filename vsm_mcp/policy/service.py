"""Process-wide policy objects kept in ``ServerContext.extras`` so the policy server and the
router's authorize step share one runtime (one module cache) and one authorizer.

Tests inject the clock behind ``context.time`` with ``ctx.extras["policy.clock"] = fn``.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vsm_mcp.context import ServerContext
from vsm_mcp.errors import InvalidArguments
from vsm_mcp.policy.authorizer import PolicyAuthorizer
from vsm_mcp.policy.build import CompiledPolicy, compile_policy
from vsm_mcp.policy.runtime import Limits, LoadedPolicy, PolicyRuntime

RUNTIME_KEY = "policy.runtime"
AUTHORIZER_KEY = "policy.authorizer"
CLOCK_KEY = "policy.clock"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def runtime_of(ctx: ServerContext) -> PolicyRuntime:
    """The context's policy runtime, created on first use with the settings' limits."""
    rt = ctx.extras.get(RUNTIME_KEY)
    if rt is None:
        limits = Limits(fuel=ctx.settings.policy_fuel, memory_bytes=ctx.settings.policy_memory_bytes)
        rt = ctx.extras[RUNTIME_KEY] = PolicyRuntime(limits)
    assert isinstance(rt, PolicyRuntime)
    return rt


def clock_of(ctx: ServerContext) -> Callable[[], float]:
    clock = ctx.extras.get(CLOCK_KEY, time.time)
    assert callable(clock)
    return clock  # type: ignore[no-any-return]


def authorizer_of(ctx: ServerContext) -> PolicyAuthorizer:
    """The context's authorizer (not started: the owner of the lifespan calls ``start()``)."""
    auth = ctx.extras.get(AUTHORIZER_KEY)
    if auth is None:
        auth = ctx.extras[AUTHORIZER_KEY] = PolicyAuthorizer(
            ctx.db, runtime_of(ctx), ctx.bus, clock=lambda: clock_of(ctx)(), ttl=ctx.settings.policy_cache_ttl_s
        )
    assert isinstance(auth, PolicyAuthorizer)
    return auth


@dataclass(frozen=True)
class Prepared:
    """A policy validated for storage: the module bytes and what to keep beside them."""

    wasm: bytes
    loaded: LoadedPolicy
    compiled: CompiledPolicy | None
    source: str

    def meta(self) -> dict[str, Any]:
        return {
            "kind": "source" if self.compiled else "wasm",
            "sha256": self.loaded.sha256,
            "policy_name": self.loaded.meta.name,
            "default": self.loaded.meta.default.effect,
            "rules": [{"id": r.id, "effect": r.effect, "reason": r.reason} for r in self.loaded.meta.rules],
            "facts": [f"{s.path}:{s.type}" for s in self.loaded.meta.slots],
        }


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise InvalidArguments(
            f"policy name {name!r} is invalid: 1-128 characters, letters, digits, '_', '.', '-', starting alphanumeric"
        )
    return name


def prepare(
    runtime: PolicyRuntime,
    name: str,
    source: str | None = None,
    wasm_base64: str | None = None,
    input_schema: Mapping[str, Any] | None = None,
) -> Prepared:
    """Compile ``source`` or validate an externally built module; raises PolicyError/AbiError."""
    if bool(source) == bool(wasm_base64):
        raise InvalidArguments("give exactly one of 'source' (policy language) or 'wasm_base64' (a built module)")
    if source:
        compiled = compile_policy(source, file=f"{name}.policy", name=name, input_schema=input_schema)
        return Prepared(compiled.wasm, runtime.load(compiled.wasm), compiled, source)
    try:
        wasm = base64.b64decode(wasm_base64 or "", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArguments("wasm_base64 is not valid base64") from None
    return Prepared(wasm, runtime.load(wasm), None, "")
