"""The search capability server (S4): per-tenant vector collections with hybrid search.

Tools: ``search_collections``, ``collection_create``, ``index_documents``, ``search``,
``delete_documents``, ``collection_stats``. The calling tenant comes from the request ``_meta``
(``ctx.tenant_of``); all state lives in tenant-scoped tables (see ``tables.py``) and in-memory
indexes rebuilt from them (see ``engine.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

from servers.search.chunking import DEFAULT_CHUNK_WORDS, DEFAULT_OVERLAP_WORDS
from servers.search.engine import SearchEngine
from servers.tool_errors import tool_errors
from vsm_mcp.context import ServerContext

EXTRAS_KEY = "search"

READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, idempotent_hint=True, destructive_hint=False, open_world_hint=False)
DELETE = ToolAnnotations(read_only_hint=False, idempotent_hint=True, destructive_hint=True, open_world_hint=False)


def engine_of(ctx: ServerContext) -> SearchEngine:
    """The context's search engine, created on first use (one per process)."""
    engine = ctx.extras.get(EXTRAS_KEY)
    if engine is None:
        engine = ctx.extras[EXTRAS_KEY] = SearchEngine(ctx)
    assert isinstance(engine, SearchEngine)
    return engine


def build(ctx: ServerContext) -> MCPServer:
    engine = engine_of(ctx)
    server = MCPServer(
        "search",
        instructions="Vector and hybrid (vector + BM25) search over your own document collections.",
    )

    @server.tool(title="List document collections", annotations=READ)
    @tool_errors
    async def search_collections(mcp_ctx: Context) -> dict[str, Any]:
        """List this tenant's collections with dimension, metric, backend, embedder and document count."""
        return {"collections": await engine.list_collections(await ctx.tenant_of(mcp_ctx))}

    @server.tool(title="Create a document collection", annotations=ToolAnnotations(read_only_hint=False, idempotent_hint=False, open_world_hint=False))
    @tool_errors
    async def collection_create(
        name: str, mcp_ctx: Context, dimension: int | None = None, metric: Literal["cos", "ip", "l2"] = "cos",
        backend: Literal["usearch", "pq", "pgvector"] = "usearch", embedder: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a collection. ``dimension`` defaults to the embedder's (the server default unless
        ``embedder`` names one: minilm, hash:<dim>, litellm:<model>); a collection whose dimension
        differs from its embedder's takes vectors only. ``backend``: usearch (HNSW; params
        connectivity, expansion_add, expansion_search, dtype) or pq (IVF-PQ with exact re-rank from
        disk; params nlist, m, nbits, nprobe, rerank, train_min) or pgvector (HNSW in PostgreSQL,
        VSM_SEARCH_PGVECTOR_URL, shared by every replica; params m, ef_construction, ef_search)."""
        tenant = await ctx.tenant_of(mcp_ctx)
        return await engine.create(tenant, name, dimension, metric, backend, embedder, params)

    @server.tool(title="Index documents into a collection", annotations=WRITE)
    @tool_errors
    async def index_documents(
        collection: str, documents: list[dict[str, Any]], mcp_ctx: Context,
        chunk_size: int = DEFAULT_CHUNK_WORDS, chunk_overlap: int = DEFAULT_OVERLAP_WORDS,
    ) -> dict[str, Any]:
        """Add or replace documents: each ``{id, text?, vector?, metadata?, tags?}``. Text is split
        into ``chunk_size``-word chunks overlapping by ``chunk_overlap`` words and embedded; a
        document with ``vector`` is one chunk with that vector. Re-indexing an id replaces all its chunks."""
        tenant = await ctx.tenant_of(mcp_ctx)
        return await engine.index_documents(tenant, collection, documents, chunk_size, chunk_overlap)

    @server.tool(title="Search a document collection (vector and keyword)", annotations=READ)
    @tool_errors
    async def search(
        collection: str, mcp_ctx: Context, query: str | None = None, vector: list[float] | None = None,
        k: int = 10, filter: dict[str, Any] | None = None,
        mode: Literal["vector", "bm25", "hybrid"] | None = None,
    ) -> dict[str, Any]:
        """Find the ``k`` best chunks for a text ``query`` or a ``vector``. ``mode``: hybrid (default
        for text: embedding + BM25 fused by reciprocal rank), vector or bm25. ``filter``:
        ``{tags_all: [...], tags_any: [...]}``, applied inside the search. Each result has id, chunk,
        score (larger = better), text, metadata and tags."""
        tenant = await ctx.tenant_of(mcp_ctx)
        return await engine.search(tenant, collection, query, vector, k, filter, mode)

    @server.tool(title="Delete documents from a collection", annotations=DELETE)
    @tool_errors
    async def delete_documents(collection: str, ids: list[str], mcp_ctx: Context) -> dict[str, Any]:
        """Delete documents (all their chunks) by id; unknown ids are ignored."""
        return await engine.delete_documents(await ctx.tenant_of(mcp_ctx), collection, ids)

    @server.tool(title="Collection statistics", annotations=READ)
    @tool_errors
    async def collection_stats(collection: str, mcp_ctx: Context) -> dict[str, Any]:
        """Documents, chunks and index figures (backend, parameters, memory) of one collection."""
        return await engine.stats(await ctx.tenant_of(mcp_ctx), collection)

    return server
