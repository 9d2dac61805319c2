"""The beliefs MCP server: ``belief_assert``, ``belief_retract``, ``belief_get``, ``belief_query``,
``belief_stats`` over a replicated, tenant-isolated BeliefSet (see ``service.py``).

``build(ctx)`` shares one ``BeliefService`` per ``ServerContext`` (``ctx.extras["beliefs"]``);
replication runs while the server's lifespan is entered (refcounted across sessions).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from servers.beliefs.service import BeliefService
from vsm_mcp.context import ServerContext
from vsm_mcp.crdt import Belief, Entry
from vsm_mcp.errors import InvalidArguments, VsmError

EXTRAS_KEY = "beliefs"
MAX_KEY = 512
MAX_VALUE_BYTES = 64 * 1024
MAX_EVIDENCE = 100
T = TypeVar("T")


def service_of(ctx: ServerContext) -> BeliefService:
    """The context's belief service, created on first use."""
    svc = ctx.extras.get(EXTRAS_KEY)
    if svc is None:
        svc = ctx.extras[EXTRAS_KEY] = BeliefService(ctx.settings, ctx.db, ctx.bus)
    assert isinstance(svc, BeliefService)
    return svc


def entry_json(e: Entry) -> dict[str, Any]:
    b = e.belief
    return {
        "key": e.key, "value": b.value, "confidence": b.confidence, "source": b.source,
        "evidence": list(b.evidence), "stamp": list(e.stamp), "node": e.dot[0],
    }


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY:
        raise InvalidArguments(f"key must be 1..{MAX_KEY} characters")
    return key


def make_belief(value: Any, confidence: float, source: str, evidence: list[str] | None) -> Belief:
    try:
        size = len(json.dumps(value, allow_nan=False, separators=(",", ":")))
    except (TypeError, ValueError) as exc:
        raise InvalidArguments(f"value must be plain JSON: {exc}") from None
    if size > MAX_VALUE_BYTES:
        raise InvalidArguments(f"value is {size} bytes of JSON; the limit is {MAX_VALUE_BYTES}")
    if not math.isfinite(confidence) or not 0.0 <= confidence <= 1.0:
        raise InvalidArguments(f"confidence must be between 0 and 1, got {confidence}")
    if len(source) > 256:
        raise InvalidArguments("source must be at most 256 characters")
    ev = tuple(evidence or ())
    if len(ev) > MAX_EVIDENCE or any(len(x) > 1024 for x in ev):
        raise InvalidArguments(f"evidence: at most {MAX_EVIDENCE} references of ≤ 1024 characters")
    return Belief(value, float(confidence), source, ev)


async def tool_errors(fn: Callable[[], Awaitable[T]]) -> T:
    """A VsmError becomes a tool error result (``is_error``) with its message."""
    try:
        return await fn()
    except VsmError as exc:
        raise ToolError(exc.message) from exc


def build(ctx: ServerContext) -> MCPServer:
    svc = service_of(ctx)

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[dict[str, Any]]:
        async with svc.running():
            yield {}

    server = MCPServer(
        "beliefs",
        instructions="Replicated beliefs (key → JSON value with confidence, source, evidence). "
        "Concurrent writes converge on every replica; an assert concurrent with a retract wins.",
        lifespan=lifespan,
    )

    @server.tool(title="Assert a belief: remember a fact with its confidence", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False))
    async def belief_assert(
        key: str,
        value: Any,
        mcp_ctx: Context,
        confidence: float = 1.0,
        source: str = "",
        evidence: list[str] | None = None,
    ) -> dict[str, Any]:
        """Believe ``value`` (any JSON) for ``key`` with a confidence in [0, 1], a source and
        evidence references. Replaces what this replica saw for the key; returns the stored
        belief once it is durable."""

        async def go() -> dict[str, Any]:
            belief = make_belief(value, confidence, source, evidence)
            entry = await svc.assert_belief(await ctx.tenant_of(mcp_ctx), check_key(key), belief)
            return entry_json(entry)

        return await tool_errors(go)

    @server.tool(title="Retract a belief (forget it)", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True))
    async def belief_retract(key: str, mcp_ctx: Context) -> dict[str, Any]:
        """Stop believing anything about ``key`` (an assert made concurrently elsewhere survives)."""

        async def go() -> dict[str, Any]:
            done = await svc.retract(await ctx.tenant_of(mcp_ctx), check_key(key))
            return {"key": key, "retracted": done}

        return await tool_errors(go)

    @server.tool(title="Get the belief held for a key", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=False))
    async def belief_get(key: str, mcp_ctx: Context) -> dict[str, Any]:
        """The belief held for ``key`` (the winner of concurrent writes) and how many concurrent
        values exist; ``found`` is false when there is none."""

        async def go() -> dict[str, Any]:
            tr = await svc.replica(await ctx.tenant_of(mcp_ctx))
            siblings = tr.state.siblings(check_key(key))
            if not siblings:
                return {"key": key, "found": False, "belief": None, "concurrent": 0}
            return {"key": key, "found": True, "belief": entry_json(siblings[0]), "concurrent": len(siblings)}

        return await tool_errors(go)

    @server.tool(title="Query beliefs by key prefix", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=False))
    async def belief_query(
        mcp_ctx: Context,
        prefix: str = "",
        source: str | None = None,
        min_confidence: float = 0.0,
        limit: int = 100,
    ) -> dict[str, Any]:
        """Beliefs whose key starts with ``prefix``, optionally only from ``source`` and with
        confidence ≥ ``min_confidence``; sorted by key, at most ``limit`` (1..1000)."""

        async def go() -> dict[str, Any]:
            if not 1 <= limit <= 1000:
                raise InvalidArguments("limit must be between 1 and 1000")
            if not 0.0 <= min_confidence <= 1.0:
                raise InvalidArguments("min_confidence must be between 0 and 1")
            tr = await svc.replica(await ctx.tenant_of(mcp_ctx))
            state = tr.state
            hits: list[Entry] = []
            for key in sorted(k for k in state.keys() if k.startswith(prefix)):
                e = state.get(key)
                if e is None or e.belief.confidence < min_confidence:
                    continue
                if source is not None and e.belief.source != source:
                    continue
                hits.append(e)
                if len(hits) > limit:
                    break
            return {"beliefs": [entry_json(e) for e in hits[:limit]], "truncated": len(hits) > limit}

        return await tool_errors(go)

    @server.tool(title="Belief replica statistics", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=False))
    async def belief_stats(mcp_ctx: Context) -> dict[str, Any]:
        """Replica statistics for the calling tenant: size, pending deltas, live peers, node id."""

        async def go() -> dict[str, Any]:
            return svc.stats(await svc.replica(await ctx.tenant_of(mcp_ctx)))

        return await tool_errors(go)

    return server
