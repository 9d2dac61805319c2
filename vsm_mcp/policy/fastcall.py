"""The hot call into a policy instance, through wasmtime's C API via ctypes.

The public ``Func.__call__`` of wasmtime-py re-reads the function type and boxes every value
on each call; for the one function we call per decision (``vsm_evaluate: (i32) -> i32``, its
type checked when the module was loaded) that overhead dominates a decision. ``FastCall``
binds the C entry points once: set fuel, copy the input into linear memory, call unchecked.
If the bindings are not what we expect, ``AVAILABLE`` is false and the runtime uses the
public API instead.
"""

from __future__ import annotations

import ctypes
import importlib
from typing import Any

import wasmtime

try:
    _b: Any = importlib.import_module("wasmtime._bindings")
    _CALL = _b._wasmtime_func_call_unchecked
    _SET_FUEL = _b._wasmtime_context_set_fuel
    _MEM_SIZE = _b._wasmtime_memory_data_size
    # Our own prototype of wasmtime_memory_data returning a plain address (int): the shared
    # one returns a ctypes pointer that costs a cast per call.
    _MEM_DATA = _b.dll["wasmtime_memory_data"]
    _MEM_DATA.restype = ctypes.c_void_p
    _MEM_DATA.argtypes = _b._wasmtime_memory_data.argtypes
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
        self._store = store  # keeps the store (and so the context pointer) alive
        self._ctx = store._context()
        self._func = ctypes.byref(func._func)
        self._mem = ctypes.byref(memory._memory)
        self._args = (_VAL_RAW * 1)()
        self._trap = _TRAP_PTR()
        self._trap_ref = ctypes.byref(self._trap)
        # Memory only grows, so a size read once is a safe lower bound for the bounds check;
        # the engine is configured with memory_may_move = False, so the address is stable.
        self._known_size = int(_MEM_SIZE(self._ctx, self._mem))
        self._addr = int(_MEM_DATA(self._ctx, self._mem) or 0)

    def __call__(self, payload: bytes, base: int, fuel: int) -> int:
        ctx = self._ctx
        n = len(payload)
        if base + n > self._known_size:
            self._known_size = int(_MEM_SIZE(ctx, self._mem))
            self._addr = int(_MEM_DATA(ctx, self._mem) or 0)
            if base + n > self._known_size:
                raise OutOfMemory
        err = _SET_FUEL(ctx, fuel)
        if err:
            raise wasmtime.WasmtimeError._from_ptr(err)
        ctypes.memmove(self._addr + base, payload, n)
        args = self._args
        args[0].i32 = n
        err = _CALL(ctx, self._func, args, 1, self._trap_ref)
        if err:
            raise wasmtime.WasmtimeError._from_ptr(err)
        if self._trap:
            trap = wasmtime.Trap._from_ptr(self._trap)
            self._trap = _TRAP_PTR()  # Trap now owns the old pointer
            self._trap_ref = ctypes.byref(self._trap)
            raise trap
        return int(args[0].i32)
