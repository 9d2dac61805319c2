"""The LLM-CDN as an MCP server: ``llm_complete``, ``llm_embed``, ``llm_cache_stats``, ``llm_cache_purge``.

``build(ctx)`` creates one ``Engine`` per ``ServerContext`` and publishes it as
``ctx.extras["llm_cdn"]``, where the OpenAI-compatible edge (router/edge/openai.py) finds it:
both front doors share one cache, one single-flight table and one set of breakers.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

from servers.llm_cdn.engine import Engine
from servers.tool_errors import tool_errors
from vsm_mcp.context import SCOPES_META_KEY, ServerContext
from vsm_mcp.errors import Forbidden, InvalidArguments

EXTRAS_KEY = "llm_cdn"
_ADMIN_SCOPES = {"*", "admin", "llm:admin", "llm:*", "llm"}


def engine_of(ctx: ServerContext) -> Engine:
    """The context's engine, created on first use."""
    engine = ctx.extras.get(EXTRAS_KEY)
    if engine is None:
        engine = ctx.extras[EXTRAS_KEY] = Engine.from_context(ctx)
    assert isinstance(engine, Engine)
    return engine


def _scopes(mcp_ctx: Context) -> set[str] | None:
    """The caller's scopes from the router's ``_meta``; None when run alone (a local operator)."""
    try:
        meta = mcp_ctx.request_context.meta
    except (AttributeError, ValueError):
        return None
    if not meta or meta.get(SCOPES_META_KEY) is None:
        return None
    scopes = meta.get(SCOPES_META_KEY) or []
    return {str(s) for s in scopes} if isinstance(scopes, list | tuple) else set()  # malformed: no scopes


def build(ctx: ServerContext) -> MCPServer:
    engine = engine_of(ctx)
    server = MCPServer(
        "llm",
        instructions="LLM gateway: cached, deduplicated completions and embeddings with provider fallbacks.",
    )

    @server.tool(title="Ask a language model (chat completion, cached)", annotations=ToolAnnotations(read_only_hint=False, idempotent_hint=False, open_world_hint=True))
    @tool_errors
    async def llm_complete(
        messages: list[dict[str, Any]], model: str, mcp_ctx: Context, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Chat completion through the LLM-CDN. ``messages`` and ``params`` (temperature, top_p,
        max_tokens, seed, tools, response_format …) follow the OpenAI chat API. Answers with
        temperature 0 or a seed are cached per tenant. Returns {cache, model, response}."""
        request = {**(params or {}), "model": model, "messages": messages}
        out = await engine.complete(await ctx.tenant_of(mcp_ctx), request)
        return {"cache": out.cache, "model": out.model, "response": out.body}

    @server.tool(title="Embed texts with an embedding model (cached)", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=True))
    @tool_errors
    async def llm_embed(
        input: str | list[str], model: str, mcp_ctx: Context, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Embeddings through the LLM-CDN (OpenAI embeddings API shape); always cached per tenant."""
        request = {**(params or {}), "model": model, "input": input}
        out = await engine.embed(await ctx.tenant_of(mcp_ctx), request)
        return {"cache": out.cache, "model": out.model, "response": out.body}

    @server.tool(title="LLM cache statistics", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=False, open_world_hint=False))
    @tool_errors
    async def llm_cache_stats() -> dict[str, Any]:
        """Hits by kind, misses, upstream calls, tokens saved, hit/miss latency, breaker states."""
        return engine.snapshot()

    @server.tool(title="Purge cached LLM answers", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True))
    @tool_errors
    async def llm_cache_purge(
        mcp_ctx: Context, model: str | None = None, older_than_s: float | None = None, tenant: str | None = None
    ) -> dict[str, Any]:
        """Delete cached answers of the calling tenant (or of ``tenant``, an id, with an admin
        scope), optionally only of ``model`` and only those older than ``older_than_s`` seconds."""
        if older_than_s is not None and older_than_s < 0:
            raise InvalidArguments("older_than_s must be >= 0")
        own = await ctx.tenant_of(mcp_ctx)
        target = tenant or own
        scopes = _scopes(mcp_ctx)
        if target != own and scopes is not None and not scopes & _ADMIN_SCOPES:
            raise Forbidden("purging another tenant's LLM cache needs the llm:admin scope")
        removed = await engine.purge(target, model, older_than_s)
        return {"removed": removed, "tenant": target, "model": model, "older_than_s": older_than_s}

    return server
