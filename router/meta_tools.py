"""The meta-tools ``find_tools`` and ``call_tool``, and the link from the catalog to the registry.

``ToolSearch`` listens to the catalog (router/registry/catalog.py) and keeps the registry in step with
it — start-up, ``list_changed``, availability — indexing lazily before the next search.
``RouterRuntime.tool_search`` is the one instance; find_tools, ``GET /v1/tools`` and
``vsm-mcp tools search`` all call ``ToolSearch.find`` — which, when a rerank model is configured,
lets router/rerank.py reorder the best hits.

``meta_tools(search, dispatcher)`` returns the two ``LocalTool``s the aggregate serves
(``/mcp?expose=search`` lists only them): ``find_tools`` searches with the caller's grants
applied, ``call_tool`` runs the named tool through ``Dispatcher.call_tool`` — the same
pipeline (auth, validation, rate limit, cache, episodes) as a direct call.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import mcp.types as mt

from router.aggregate import LocalTool
from router.dispatch import Dispatcher
from router.registry.catalog import ToolEntry
from router.registry.embedding_store import default_store
from router.registry.index import (
    MAX_QUERY_CHARS,
    Mode,
    SearchHit,
    SearchResult,
    ToolRecord,
    ToolRegistry,
    check_query,
    record_from_tool,
)
from router.rerank import Reranker
from vsm_mcp.auth import Principal, grants
from vsm_mcp.config import Settings
from vsm_mcp.embeddings import make_embedder
from vsm_mcp.errors import InvalidArguments

log = logging.getLogger(__name__)

MAX_LIMIT = 50


def record_of(entry: ToolEntry, server_text: str = "") -> ToolRecord:
    """The registry's view of a catalog entry: the upstream's own ``tools/list`` entry, converted
    by ``record_from_tool`` exactly as ``vsm-mcp bench retrieval`` converts its tool files, with
    what the upstream says about itself (``server_text``)."""
    return record_from_tool(
        entry.index_key or entry.server, entry.tool, entry.public_name, tags=entry.tags, available=entry.available,
        server_text=server_text,
    )


class ToolSearch:
    """The registry fed from the catalog, searched on behalf of a principal.

    A catalog listener: ``on_change`` only notes the server's new tool list (the catalog calls
    listeners synchronously and they must not block). The next search first indexes what is
    pending on a worker thread, embedding only tools whose text is new (the store has the
    rest), so a router that is never searched never runs the model.
    """

    def __init__(self, registry: ToolRegistry, describe: Callable[[str], str] | None = None) -> None:
        self.registry = registry
        # server -> its own description and instructions (the runtime reads its upstream's
        # initialize answer); evidence for every tool of that server.
        self.describe = describe
        self._pending: dict[str, list[ToolRecord]] = {}
        self._lock = threading.Lock()  # guards _pending
        self._index_lock = threading.Lock()  # one indexing pass at a time
        self.errors = 0
        # tenant -> the index keys it may see (Catalog.index_keys): a tenant's own upstreams and
        # overridden tools are indexed under ``server@tenant`` and shown to that tenant only.
        self.visible_keys: Any = None
        # The optional model rerank of hybrid searches (router/rerank.py); set by the runtime once
        # its dispatcher exists, None when VSM_TOOL_SEARCH_RERANK_MODEL is empty.
        self.reranker: Reranker | None = None

    def visible(self, principal: Principal) -> Any:
        """``allowed(record)`` for ``principal``: its grants and its tenant's view of the catalog."""
        keys = self.visible_keys(principal.tenant_id) if self.visible_keys is not None else None
        scopes = principal.scopes
        if keys is None:
            return lambda r: grants(scopes, r.tags)
        return lambda r: r.server in keys and grants(scopes, r.tags)

    def on_change(self, server: str, tools: list[ToolEntry]) -> None:
        text = ""
        if self.describe is not None and tools:
            try:
                text = self.describe(tools[0].server)  # ``server`` may be a tenant's index key
            except Exception:  # a description is extra evidence, never a reason to lose the tools
                log.exception("describing server %s failed", server)
        records = [record_of(e, text) for e in tools]
        with self._lock:
            self._pending[server] = records  # a newer list for a server replaces an older one

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def index_pending(self) -> None:
        """Apply every pending change to the registry (blocking; may run the embedding model)."""
        with self._index_lock:
            while True:
                with self._lock:
                    if not self._pending:
                        return
                    batch, self._pending = self._pending, {}
                try:
                    self.registry.replace_servers(batch)  # one index rebuild for all of them
                except Exception:  # keep serving the previous index rather than lose search entirely
                    self.errors += 1
                    log.exception("indexing the tools of %s failed", ", ".join(sorted(batch)))

    async def refresh(self) -> None:
        """``index_pending`` on a worker thread, if anything is pending."""
        if self._pending:
            await anyio.to_thread.run_sync(self.index_pending)

    async def find(
        self, principal: Principal, query: str, *, limit: int = 5, server: str | None = None,
        tags: Sequence[str] | None = None, mode: Mode = "hybrid",
    ) -> SearchResult:
        """The best tools for ``query`` that ``principal`` may call (others are never returned),
        with calibrated scores and ``no_match`` (router/registry/ranker.py)."""
        check_query(query)  # before any work: a long query costs time on the event loop
        await self.refresh()
        if server is not None and self.visible_keys is not None:
            # A tenant's own upstream, or its variant of an overridden one, is indexed as server@tenant.
            keys = self.visible_keys(principal.tenant_id)
            if server not in keys and f"{server}@{principal.tenant_id}" in keys:
                server = f"{server}@{principal.tenant_id}"
        if mode != "bm25" and query.strip() and not self.registry.has_query(query):
            # Embedding a new query runs the model: keep it off the event loop.
            await anyio.to_thread.run_sync(self.registry.embed_query, query)
        reranker = self.reranker if mode == "hybrid" else None
        result = self.registry.query(
            query, limit=max(limit, reranker.candidates) if reranker else limit, server=server, tags=tags,
            mode=mode, allowed=self.visible(principal),
        )
        if reranker is None:
            return result
        return await reranker.rerank(principal, query, result, limit)  # never raises, bounded in time


def build_registry(settings: Settings) -> ToolRegistry:
    """The registry the router uses: ``VSM_EMBEDDER``, ``VSM_SEARCH_FUSION``, vectors under ``VSM_HOME``."""
    embedder = make_embedder(settings.embedder)
    store = default_store(settings.home, embedder.name, embedder.dim)
    return ToolRegistry(embedder, store=store, fusion=settings.search_fusion)


def attach_tool_search(settings: Settings, catalog: Any, describe: Callable[[str], str] | None = None) -> ToolSearch:
    """Tool search fed by ``catalog`` (a router/registry/catalog.py ``Catalog``) from now on;
    ``describe(server)`` gives an upstream's own description (its initialize instructions)."""
    search = ToolSearch(build_registry(settings), describe)
    catalog.add_listener(search)
    search.visible_keys = getattr(catalog, "index_keys", None)
    for server in {e.server for e in catalog.tools()}:
        search.on_change(server, catalog.server_tools(server))
    return search


def install_meta_tools(aggregate: Any, search: ToolSearch, dispatcher: Dispatcher) -> None:
    """Serve ``find_tools`` and ``call_tool`` on a router/aggregate.py ``Aggregate``."""
    for tool in meta_tools(search, dispatcher):
        aggregate.add_local_tool(tool)


FIND_TOOLS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS, "description": "What you want to do, in plain words."},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 5, "description": "How many tools."},
        "server": {"type": "string", "description": "Only tools of this upstream server."},
        "tags": {"type": "array", "items": {"type": "string"}, "description": "Only tools with all these capability tags."},
    },
    "required": ["query"],
    "additionalProperties": False,
}

CALL_TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "description": "The tool's name as find_tools returned it."},
        "arguments": {"type": "object", "description": "The tool's arguments, matching its input schema."},
    },
    "required": ["name"],
    "additionalProperties": False,
}


def _hit_json(hit: SearchHit) -> dict[str, Any]:
    rec = hit.record
    out: dict[str, Any] = {"name": rec.public_name, "server": rec.server.split("@", 1)[0], "score": round(hit.score, 4)}
    if rec.title:
        out["title"] = rec.title
    out["description"] = rec.description
    out["input_schema"] = dict(rec.input_schema)
    return out


def parse_find_args(arguments: dict[str, Any]) -> tuple[str, int, str | None, list[str] | None]:
    """(query, limit, server, tags) from find_tools arguments; InvalidArguments names a bad field."""
    unknown = sorted(set(arguments) - set(FIND_TOOLS_SCHEMA["properties"]))
    if unknown:
        raise InvalidArguments(f"find_tools: unknown argument {unknown[0]!r}", data={"field": unknown[0]})
    query = arguments.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidArguments("find_tools: 'query' must be a non-empty string", data={"field": "query"})
    try:
        check_query(query)  # the registry's own rule, named as this tool's field
    except InvalidArguments as exc:
        raise InvalidArguments(f"find_tools: {exc}", data={"field": "query"}) from None
    limit = arguments.get("limit", 5)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidArguments(f"find_tools: 'limit' must be an integer 1..{MAX_LIMIT}", data={"field": "limit"})
    server = arguments.get("server")
    if server is not None and not isinstance(server, str):
        raise InvalidArguments("find_tools: 'server' must be a string", data={"field": "server"})
    tags = arguments.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise InvalidArguments("find_tools: 'tags' must be a list of strings", data={"field": "tags"})
    return query, limit, server, tags


def hits_json(hits: Sequence[SearchHit]) -> list[dict[str, Any]]:
    """Search hits as the JSON objects find_tools and ``GET /v1/tools`` return."""
    return [_hit_json(h) for h in hits]


def result_json(result: SearchResult) -> dict[str, Any]:
    """``{"tools": [...], "no_match": bool, "reranked": bool}``: the nearest tools are listed even
    with no match; with a rerank model configured, ``"rerank": {"status", "cache"}`` says what it did."""
    out: dict[str, Any] = {"tools": hits_json(result.hits), "no_match": result.no_match, "reranked": result.reranked}
    if result.rerank is not None:
        out["rerank"] = {"status": result.rerank.status, "cache": result.rerank.cache}
    return out


def meta_tools(search: ToolSearch, dispatcher: Dispatcher) -> list[LocalTool]:
    """``find_tools`` and ``call_tool`` for ``Aggregate.add_local_tool``."""

    async def find_handler(principal: Principal, arguments: dict[str, Any]) -> mt.CallToolResult:
        query, limit, server, tags = parse_find_args(arguments)
        payload = result_json(await search.find(principal, query, limit=limit, server=server, tags=tags))
        return mt.CallToolResult(
            content=[mt.TextContent(type="text", text=json.dumps(payload, separators=(",", ":")))],
            structured_content=payload,
        )

    async def call_handler(principal: Principal, arguments: dict[str, Any]) -> mt.CallToolResult:
        unknown = sorted(set(arguments) - {"name", "arguments"})
        if unknown:
            raise InvalidArguments(f"call_tool: unknown argument {unknown[0]!r}", data={"field": unknown[0]})
        name = arguments.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArguments("call_tool: 'name' must be a non-empty string", data={"field": "name"})
        args = arguments.get("arguments", {})
        if not isinstance(args, dict):
            raise InvalidArguments("call_tool: 'arguments' must be an object", data={"field": "arguments"})
        return await dispatcher.call_tool(principal, name, args, source="meta")

    return [
        LocalTool(
            name="find_tools",
            title="Find tools",
            description=(
                "Search every tool this endpoint can call by describing the task in plain words. "
                "Returns the best matches with their names, descriptions, input schemas and scores "
                "(the probability that the tool is the one asked for), and no_match: true when no tool "
                "fits the task (the nearest are still listed); call one with call_tool."
            ),
            input_schema=FIND_TOOLS_SCHEMA,
            handler=find_handler,
            annotations=mt.ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
        ),
        LocalTool(
            name="call_tool",
            title="Call a tool",
            description="Call a tool found with find_tools: give its name and its arguments.",
            input_schema=CALL_TOOL_SCHEMA,
            handler=call_handler,
        ),
    ]
