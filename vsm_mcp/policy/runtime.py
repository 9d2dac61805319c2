"""Sandboxed execution of policy modules in wasmtime.

One ``PolicyRuntime`` per process holds the engine (fuel metering on) and a cache of loaded
modules keyed by the sha256 of their bytes, so a decision never recompiles. Each loaded
policy keeps a small pool of instances (one store each, with a memory limit) that are reused
across decisions; an instance that trapped is dropped, never reused.

Fail closed: fuel exhaustion, a memory limit hit, any trap or an ABI mismatch at evaluation
time yields a ``deny`` decision whose ``error`` says what happened — never an exception.
Problems found when loading (bad bytes, imports, wrong exports, bad metadata) raise AbiError,
which is how ``policy_put`` rejects a module.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import wasmtime

from vsm_mcp.policy.abi import ABI_VERSION, FUNC_EXPORTS, PolicyMeta, decode_result
from vsm_mcp.policy.decision import Decision
from vsm_mcp.policy.diagnostics import AbiError
from vsm_mcp.policy.encoder import Encoder
from vsm_mcp.policy.fastcall import FastCall, OutOfMemory
from vsm_mcp.policy.fastcall import self_check as fast_self_check

PAGE = 65536


@dataclass(frozen=True)
class Limits:
    """Per-evaluation sandbox limits."""

    fuel: int = 1_000_000
    memory_bytes: int = 16 * 1024 * 1024
    pool_size: int = 4


@dataclass
class _Instance:
    store: wasmtime.Store
    memory: wasmtime.Memory
    evaluate: wasmtime.Func
    exports: Any
    fast: FastCall | None = None


def check_exports(module: wasmtime.Module) -> None:
    """Raise AbiError unless ``module`` imports nothing and exports exactly what the ABI needs."""
    imports = [f"{i.module}.{i.name}" for i in module.imports]
    if imports:
        raise AbiError(
            f"the module imports {', '.join(imports)}; a policy module may import nothing "
            "(no WASI, no host functions: a policy cannot reach files or the network)"
        )
    exports = {e.name: e.type for e in module.exports}
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        raise AbiError("the module must export its linear memory as 'memory'")
    for name, (params, results) in FUNC_EXPORTS.items():
        ty = exports.get(name)
        if not isinstance(ty, wasmtime.FuncType):
            raise AbiError(f"the module must export a function {name!r} (see docs/policies.md, the policy ABI)")
        got = (tuple(str(p) for p in ty.params), tuple(str(r) for r in ty.results))
        if got != (params, results):
            raise AbiError(
                f"export {name!r} has type ({', '.join(got[0])}) -> ({', '.join(got[1])}); "
                f"the ABI needs ({', '.join(params)}) -> ({', '.join(results)})"
            )


log = logging.getLogger(__name__)


class LoadedPolicy:
    """A validated module with its metadata, encoder and instance pool."""

    def __init__(self, runtime: PolicyRuntime, module: wasmtime.Module, sha256: str) -> None:
        self.runtime = runtime
        self.module = module
        self.sha256 = sha256
        self._pool: list[_Instance] = []
        try:
            inst = self._instantiate()
            self.meta, self.base = self._read_header(inst)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise AbiError(f"instantiating the module and reading its metadata failed: {_one_line(exc)}") from None
        self.encoder = Encoder(self.meta)
        self._encode = self.encoder.generated  # bound once: one Python call less per decision
        self._fuel = runtime.limits.fuel
        self._pool_size = runtime.limits.pool_size
        # Every valid result code → its (immutable) Decision, built once: no per-call decoding.
        self._decisions: dict[int, Decision] = {}
        for index, rule in enumerate((self.meta.default, *self.meta.rules)):
            code = (index << 1) | (1 if rule.effect == "deny" else 0)
            self._decisions[code] = Decision(rule.effect, rule.id, rule.reason, self.meta.name)
        self._pool.append(inst)

    @property
    def name(self) -> str:
        return self.meta.name

    def _instantiate(self) -> _Instance:
        store = wasmtime.Store(self.runtime.engine)
        store.set_limits(memory_size=self.runtime.limits.memory_bytes, instances=1, tables=1, memories=1)
        store.set_fuel(self.runtime.limits.fuel)
        instance = wasmtime.Instance(store, self.module, [])
        exports = instance.exports(store)
        memory, evaluate = exports["memory"], exports["vsm_evaluate"]
        assert isinstance(memory, wasmtime.Memory) and isinstance(evaluate, wasmtime.Func)
        fast = FastCall(store, memory, evaluate) if self.runtime.fast_calls else None
        return _Instance(store, memory, evaluate, exports, fast)

    def _read_header(self, inst: _Instance) -> tuple[PolicyMeta, int]:
        exports = inst.exports
        version = exports["vsm_abi_version"](inst.store)
        if version != ABI_VERSION:
            raise AbiError(f"vsm_abi_version() returned {version}; this host speaks ABI {ABI_VERSION}")
        ptr, length = exports["vsm_meta_ptr"](inst.store), exports["vsm_meta_len"](inst.store)
        size = inst.memory.data_len(inst.store)
        if not (0 <= ptr and 0 <= length <= 1 << 20 and ptr + length <= size):
            raise AbiError(f"metadata at {ptr}+{length} is outside the module's memory ({size} bytes)")
        meta = PolicyMeta.from_json(bytes(inst.memory.read(inst.store, ptr, ptr + length)))
        base = exports["vsm_input_base"](inst.store)
        if not isinstance(base, int) or base < 0 or base % 16:
            raise AbiError(f"vsm_input_base() returned {base}; it must be a 16-byte aligned address")
        return meta, base

    def evaluate(self, facts: Mapping[str, Any]) -> Decision:
        """Decide for one decision document; never raises for a module misbehaving."""
        payload = self._encode(facts, self.base)
        try:
            inst = self._pool.pop()
        except IndexError:
            try:
                inst = self._instantiate()
            except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
                return self._deny(f"the policy module could not be instantiated: {_one_line(exc)}")
        try:
            code = self._run(inst, payload)
            decision = self._decisions.get(code)
            if decision is None:
                decode_result(code, self.meta)  # raises AbiError saying what is wrong with it
                raise AbiError(f"vsm_evaluate returned {code}, which is not a decision")
        except wasmtime.Trap as exc:
            if exc.trap_code == wasmtime.TrapCode.OUT_OF_FUEL:
                return self._deny(f"fuel exhausted: the policy ran past {self.runtime.limits.fuel} fuel units")
            return self._deny(f"the policy trapped: {_trap_text(exc)}")
        except (wasmtime.WasmtimeError, AbiError) as exc:
            return self._deny(_one_line(exc))
        if len(self._pool) < self._pool_size:
            self._pool.append(inst)
        return decision

    def _run(self, inst: _Instance, payload: bytes) -> int:
        fuel = self._fuel
        if inst.fast is not None:
            try:
                return inst.fast(payload, self.base, fuel)
            except OutOfMemory:
                self._grow(inst, len(payload))
                return inst.fast(payload, self.base, fuel)
        self._grow(inst, len(payload))
        inst.memory.write(inst.store, payload, self.base)
        inst.store.set_fuel(fuel)
        code = inst.evaluate(inst.store, len(payload))
        if not isinstance(code, int):
            raise AbiError(f"vsm_evaluate returned {code!r}, not an i32")
        return code

    def _grow(self, inst: _Instance, size: int) -> None:
        """Grow the instance's memory so ``size`` input bytes fit at the base (within the limit)."""
        need = self.base + size
        have = inst.memory.data_len(inst.store)
        if need <= have:
            return
        limit = self.runtime.limits.memory_bytes
        if need > limit:
            raise AbiError(f"the input needs {need} bytes of policy memory; the limit is {limit}")
        inst.memory.grow(inst.store, (need - have + PAGE - 1) // PAGE)

    def _deny(self, error: str) -> Decision:
        return Decision("deny", "sandbox", f"policy {self.meta.name!r} failed closed: {error}", self.meta.name, error)


def _fast_calls_usable() -> bool:
    reason = fast_self_check()
    if reason is not None and not _fast_warned:
        _fast_warned.append(True)
        log.warning("policy fast call off, using wasmtime's public API: %s", reason)
    return reason is None


_fast_warned: list[bool] = []


class PolicyRuntime:
    """The wasmtime engine and the module cache (LRU by sha256)."""

    def __init__(self, limits: Limits | None = None, cache_size: int = 256, *, fast_calls: bool = True) -> None:
        self.limits = limits or Limits()
        # False: only wasmtime-py's public API (tests compare both). The private fast call is used
        # only after its start-up probe agreed with the public API (vsm_mcp/policy/fastcall.py).
        self.fast_calls = fast_calls and _fast_calls_usable()
        config = wasmtime.Config()
        config.consume_fuel = True
        # Linear memory stays at one address for its life, so the hot path can cache it.
        config.memory_may_move = False
        self.engine = wasmtime.Engine(config)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, LoadedPolicy] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, wasm: bytes) -> LoadedPolicy:
        """The loaded policy for these bytes, compiled once; AbiError when it breaks the ABI."""
        digest = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            hit = self._cache.get(digest)
            if hit is not None:
                self._cache.move_to_end(digest)
                return hit
        try:
            module = wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise AbiError(f"not a valid WebAssembly module: {_one_line(exc)}") from None
        check_exports(module)
        loaded = LoadedPolicy(self, module, digest)
        with self._lock:
            self._cache[digest] = loaded
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return loaded


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _trap_text(trap: wasmtime.Trap) -> str:
    code = trap.trap_code
    if code is not None:
        return code.name.lower().replace("_", " ")
    lines = [ln.strip() for ln in str(trap).splitlines() if ln.strip()]
    return lines[-1] if lines else "trap"
