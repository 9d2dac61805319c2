"""Extension points of the dispatch pipeline, defined in the kernel so servers and edges can
implement them without importing the router.

The router's dispatcher (router/dispatch.py) builds one ``CallInfo`` per tool call and runs:
``Authorizer.authorize`` at the authorize step (after capability grants), ``CallCache`` around
the upstream call for cacheable tools, and every ``CallObserver`` after the call (metrics,
events, episodes). Hooks raise ``vsm_mcp.errors`` classes only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from vsm_mcp.auth import Principal


@dataclass
class CallInfo:
    """Everything known about one tool call when it enters the pipeline."""

    principal: Principal
    public_name: str
    server: str
    tool: str
    arguments: dict[str, Any]
    tags: tuple[str, ...] = ()
    annotations: dict[str, Any] = field(default_factory=dict)
    source: str = "mcp"  # mcp | stdio | rest | telegram | planner | meta
    trace_id: str = ""  # W3C trace id (32 hex): the caller's, or new when it sent none
    span_id: str = ""  # the router's span of this call: the parent of the upstream's (16 hex)
    parent_id: str = ""  # the caller's span, when it sent a traceparent
    tracestate: str = ""  # the caller's W3C tracestate, passed on unchanged
    schema_hash: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # extra request _meta for the upstream
    cache: str = ""  # set by the CallCache: hit | miss | shared (waited on an identical call); "" = not looked up


@dataclass
class CallOutcome:
    """What happened: ``outcome`` is ``ok``, ``tool_error`` or an error label from vsm_mcp.errors."""

    outcome: str
    duration_ms: float
    error: str = ""
    cached: bool = False
    finished_at: float = 0.0  # epoch seconds, set when the call is recorded (span end time)


class Authorizer(Protocol):
    async def authorize(self, call: CallInfo) -> None:
        """Return to allow; raise PolicyDenied (naming the rule) to deny."""


class CallObserver(Protocol):
    async def observe(self, call: CallInfo, outcome: CallOutcome) -> None:
        """Called after every call, off the caller's critical path where possible."""


class ToolCaller(Protocol):
    """How a server calls another server's tool: through the router's dispatcher, with the same
    grants, policy, limits and audit as any client (``ServerContext.tools``; set by the router)."""

    async def call(
        self,
        principal: Principal,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        source: str = "server",
        meta: dict[str, Any] | None = None,
    ) -> Any:
        """Run ``<server>__<tool>`` as ``principal``; returns an ``mcp.types.CallToolResult``.
        Routing failures raise ``vsm_mcp.errors`` classes, as for any caller."""


class CallCache(Protocol):
    async def get_or_call(self, call: CallInfo, invoke: Callable[[], Awaitable[Any]]) -> tuple[Any, bool]:
        """Return (result, was_cached); call ``invoke`` at most once per key at a time, and say
        what happened in ``call.cache``."""


TOOL_CACHE_KEY = "tool_cache"  # ServerContext.extras key of the router's CacheControl


class CacheControl(Protocol):
    """The tool-result cache as the ``cache`` server sees it (``ctx.extras["tool_cache"]``)."""

    async def purge(self, tenant: str, server: str | None = None) -> None:
        """Forget ``tenant``'s cached results (of one ``server``, or all), on every replica."""

    def stats(self) -> dict[str, Any]:
        """Counters and sizes, for ``cache_stats``."""
