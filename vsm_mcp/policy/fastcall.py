"""The hot call into a policy instance, through wasmtime's C API via ctypes.

The public ``Func.__call__`` of wasmtime-py re-reads the function type and boxes every value
on each call; for the one function we call per decision (``vsm_evaluate: (i32) -> i32``, its
type checked when the module was loaded) that overhead dominates a decision. ``FastCall``
binds the C entry points once, with plain-address prototypes so ctypes converts nothing but
integers: set fuel, copy the input into linear memory, call unchecked. If the bindings are
not what we expect, ``AVAILABLE`` is false and the runtime uses the public API instead.

Guard (private API): wasmtime is pinned to the range tested here (pyproject.toml), and
``self_check()`` runs once per process before the first fast call: it calls a tiny module both
ways and compares; on any mismatch the runtime logs one line and keeps the public API. Measured
(benchmarks/policy_eval.py, ``private_call_speedup_p50_x``): the public ``Func.__call__`` costs
~24 µs more per decision (p50 33 vs 9 µs, 3.6×) — more than the whole WASM evaluation — so the
fast path stays.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
from typing import Any

import wasmtime

_P = ctypes.c_void_p
try:
    _b: Any = importlib.import_module("wasmtime._bindings")

    def _proto(name: str, restype: Any, *argtypes: Any) -> Any:
        fn = _b.dll[name]  # a fresh function object: wasmtime-py's own prototypes stay as they are
        fn.restype = restype
        fn.argtypes = list(argtypes)
        return fn

    _CALL = _proto("wasmtime_func_call_unchecked", _P, _P, _P, _P, ctypes.c_size_t, _P)
    _SET_FUEL = _proto("wasmtime_context_set_fuel", _P, _P, ctypes.c_uint64)
    _MEM_SIZE = _proto("wasmtime_memory_data_size", ctypes.c_size_t, _P, _P)
    _MEM_DATA = _proto("wasmtime_memory_data", _P, _P, _P)
    _ERROR_PTR = ctypes.POINTER(_b.wasmtime_error_t)
    _VAL_RAW = _b.wasmtime_val_raw
    _TRAP_PTR = ctypes.POINTER(_b.wasm_trap_t)
    AVAILABLE = True
except (ImportError, AttributeError, TypeError, KeyError):  # pragma: no cover - another wasmtime-py
    AVAILABLE = False


class OutOfMemory(Exception):
    """The input does not fit the instance's current memory (the caller grows it)."""


class FastCall:
    """Calls ``vsm_evaluate`` of one instance with minimal per-call work."""

    def __init__(self, store: wasmtime.Store, memory: wasmtime.Memory, func: wasmtime.Func) -> None:
        self._keep = (store, memory, func)  # the addresses below point into these
        self._ctx = ctypes.cast(store._context(), _P).value
        self._func = ctypes.addressof(func._func)
        self._mem = ctypes.addressof(memory._memory)
        self._args = (_VAL_RAW * 1)()
        self._args_addr = ctypes.addressof(self._args)
        self._i32 = ctypes.c_int32.from_address(self._args_addr)  # the i32 lane of args[0]
        self._trap = _TRAP_PTR()
        self._trap_addr = ctypes.addressof(self._trap)
        self._refresh()

    def _refresh(self) -> None:
        # Memory only grows, so a size read once is a safe lower bound for the bounds check;
        # the engine is configured with memory_may_move = False, so the address is stable.
        size = int(_MEM_SIZE(self._ctx, self._mem))
        addr = int(_MEM_DATA(self._ctx, self._mem) or 0)
        self._size = size
        self._view = memoryview((ctypes.c_ubyte * size).from_address(addr)).cast("B") if size else None

    def __call__(self, payload: bytes, base: int, fuel: int) -> int:
        end = base + len(payload)
        if end > self._size:
            self._refresh()
            if end > self._size:
                raise OutOfMemory
        err = _SET_FUEL(self._ctx, fuel)
        if err:
            raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, _ERROR_PTR))
        assert self._view is not None
        self._view[base:end] = payload
        self._i32.value = len(payload)
        err = _CALL(self._ctx, self._func, self._args_addr, 1, self._trap_addr)
        if err:
            raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, _ERROR_PTR))
        if self._trap:
            trap = wasmtime.Trap._from_ptr(self._trap)
            self._trap = _TRAP_PTR()  # the Trap object owns the old pointer now
            self._trap_addr = ctypes.addressof(self._trap)
            raise trap
        return self._i32.value


# A module with the shape of a policy's hot export: memory, and ``vsm_evaluate(len) -> i32``
# returning the sum of the input bytes plus ``len`` (so a wrong copy or a wrong argument shows).
_PROBE_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "vsm_evaluate") (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (local.set $acc (local.get $n))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $acc (i32.add (local.get $acc) (i32.load8_u (i32.add (i32.const 16) (local.get $i)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $acc)))
"""


@functools.cache
def self_check() -> str | None:
    """None when the private call gives the public API's answer here; else why it does not."""
    if not AVAILABLE:
        return "wasmtime's private bindings are not what fastcall.py expects"
    try:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.memory_may_move = False
        engine = wasmtime.Engine(config)
        store = wasmtime.Store(engine)
        store.set_fuel(1_000_000)
        instance = wasmtime.Instance(store, wasmtime.Module(engine, bytes(wasmtime.wat2wasm(_PROBE_WAT))), [])
        exports = instance.exports(store)
        memory, func = exports["memory"], exports["vsm_evaluate"]
        assert isinstance(memory, wasmtime.Memory) and isinstance(func, wasmtime.Func)
        payload = bytes(range(1, 40))
        fast = FastCall(store, memory, func)(payload, 16, 1_000_000)
        memory.write(store, payload, 16)
        public = func(store, len(payload))
    except Exception as exc:  # any failure of the private path means: use the public one
        return f"the private call failed its probe: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else exc!r}"
    if fast != public:
        return f"the private call answered {fast}, the public API {public}"
    return None
