"""Direct writes: SSE bytes written straight to the socket of a uvicorn HTTP/1.1 response.

Why: through the ASGI ``send`` path one event costs every connection a task wakeup plus an
ASGI message through uvicorn (~30-50 µs of CPU each), so 10,000 connections need ~0.4 s per
event. Writing one pre-framed chunk to each connection's asyncio transport from a single loop
costs a few µs per connection (mostly the ``send()`` syscall uvloop issues).

How, and why it stays correct: the response *head* still goes through ``send`` (middleware and
uvicorn see a normal response start; uvicorn picks chunked framing because our SSE headers carry
no Content-Length). Afterwards we write complete HTTP/1.1 chunks ourselves — uvicorn keeps no
byte count for chunked bodies, so chunks written by us and chunks written later by ``send``
(the overflow notice, the terminating ``0`` chunk) interleave safely at chunk boundaries.

The transport is found only where that reasoning holds: uvicorn's httptools request cycle,
reached from ``send`` through nothing but wrappers known to forward messages unchanged
(Starlette's error and exception middlewares). Anything else — h11, another ASGI server,
httpx's ASGITransport, a body-rewriting middleware such as GZip — gets ``None`` and the
endpoint uses the portable ASGI path.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
from typing import Any

from starlette.types import Scope, Send

from vsm_mcp.internals import missing, nested_code, version_in

log = logging.getLogger(__name__)

# Wrappers of ``send`` that pass every message through unchanged; each holds the next ``send``
# in its closure cell named ``send``. A wrapper not listed here might rewrite the body, so it
# stops the search (and the connection uses the ASGI path).
TRANSPARENT_SENDERS = frozenset({
    ("starlette.middleware.errors", "ServerErrorMiddleware.__call__.<locals>._send"),
    ("starlette._exception_handler", "wrap_app_handling_exceptions.<locals>.wrapped_app.<locals>.sender"),
    ("router.edge.route_metrics", "RouteMetrics.__call__.<locals>.send_status"),  # notes the status only
    # the gate: the audit step notes the status; CORS adds headers to the head only
    ("router.gate.gate", "Gate._act.<locals>.watch"),
    ("router.gate.gate", "_with_headers.<locals>.wrapped"),
})
UVICORN_CYCLE = ("uvicorn.protocols.http.httptools_impl", "RequestResponseCycle")
# Where each transparent sender is defined (module, outer callable, inner qualname): the
# self-check finds the inner function's code there and checks it still closes over ``send``.
_SENDER_HOMES = (
    ("starlette.middleware.errors", "ServerErrorMiddleware.__call__",
     "ServerErrorMiddleware.__call__.<locals>._send"),
    ("starlette._exception_handler", "wrap_app_handling_exceptions",
     "wrap_app_handling_exceptions.<locals>.wrapped_app.<locals>.sender"),
    ("router.edge.route_metrics", "RouteMetrics.__call__", "RouteMetrics.__call__.<locals>.send_status"),
    ("router.gate.gate", "Gate._act", "Gate._act.<locals>.watch"),
    ("router.gate.gate", "_with_headers", "_with_headers.<locals>.wrapped"),
)
_CYCLE_INTERNALS = ("scope", "transport", "disconnected", "response_started", "chunked_encoding", "response_complete")
# Pinned in pyproject.toml to the ranges these internals were read from.
TESTED = {"starlette": ("1.10", "1.11"), "uvicorn": ("0.54", "0.55")}


@functools.cache
def self_check() -> str | None:
    """None when the Starlette and uvicorn internals direct writes rely on are as expected; else
    why not. On a mismatch ``direct_writer`` always answers None (the portable ASGI path) and the
    reason is logged once."""
    for dist, (lo, hi) in TESTED.items():
        reason = version_in(dist, lo, hi)
        if reason:
            return reason
    for module_name, outer, inner in _SENDER_HOMES:
        obj: Any = importlib.import_module(module_name)
        for part in outer.split("."):
            obj = getattr(obj, part, None)
        code = nested_code(obj, inner)
        if code is None or "send" not in code.co_freevars:
            return f"{module_name}: {inner} no longer forwards through a closure cell named send"
    cycle_cls = getattr(importlib.import_module(UVICORN_CYCLE[0]), UVICORN_CYCLE[1], None)
    if cycle_cls is None:
        return f"{UVICORN_CYCLE[0]}.{UVICORN_CYCLE[1]} is gone"
    return missing(cycle_cls, _CYCLE_INTERNALS)


def engaged() -> bool:
    """Whether direct writes may be used in this process (logs the reason once when not)."""
    reason = self_check()
    if reason is not None and not _told:
        _told.append(True)
        log.warning("SSE direct writes off, using the ASGI path: %s", reason)
    return reason is None


_told: list[bool] = []


class DirectWriter:
    """The transport of one chunked uvicorn response, for whole-chunk writes that never wait."""

    __slots__ = ("cycle", "transport")

    def __init__(self, cycle: Any) -> None:
        self.cycle = cycle
        self.transport: asyncio.Transport = cycle.transport

    @property
    def alive(self) -> bool:
        # uvicorn sets ``disconnected`` in connection_lost; writing after that only makes the
        # transport count (and eventually log) lost writes.
        return not self.cycle.disconnected and not self.transport.is_closing()

    def buffered(self) -> int:
        """Bytes the kernel has not taken yet (what a client that stopped reading piles up)."""
        return self.transport.get_write_buffer_size()

    def write(self, chunk: bytes) -> None:
        self.transport.write(chunk)

    def abort(self) -> None:
        """Drop the connection and its unsent bytes (a client that stays unreadable)."""
        self.transport.abort()


def _owner_cycle(send: Any) -> Any:
    seen = 0
    while send is not None and seen < 8:
        seen += 1
        owner = getattr(send, "__self__", None)
        if owner is not None:
            kind = type(owner)
            return owner if (kind.__module__, kind.__qualname__) == UVICORN_CYCLE else None
        code = getattr(send, "__code__", None)
        if code is None or (getattr(send, "__module__", None), send.__qualname__) not in TRANSPARENT_SENDERS:
            return None
        try:
            send = send.__closure__[code.co_freevars.index("send")].cell_contents
        except (ValueError, IndexError, TypeError):
            return None
    return None


def direct_writer(scope: Scope, send: Send) -> DirectWriter | None:
    """The direct writer of this response, or None where direct writes would not be safe.

    Call it after ``http.response.start`` went through ``send``: only then is the framing known.
    """
    if not engaged():
        return None
    cycle = _owner_cycle(send)
    if cycle is None or getattr(cycle, "scope", None) is not scope:
        return None  # not uvicorn/httptools, or a middleware replaced the request scope
    if not (cycle.response_started and cycle.chunked_encoding is True and not cycle.response_complete):
        return None  # e.g. HEAD, or a Content-Length response: not ours to frame
    if cycle.disconnected or cycle.transport is None or cycle.transport.is_closing():
        return None
    return DirectWriter(cycle)
