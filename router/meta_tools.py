"""The meta-tools ``find_tools`` and ``call_tool``, and the link from the catalog to the registry.

``RegistryFeeder`` listens to the catalog (router/catalog.py) and keeps the registry in step
with it: start-up, ``list_changed`` and availability changes. The catalog calls listeners
synchronously and they must not block, so a change whose embeddings are all known is applied
at once, and one that needs the embedding model runs on a worker thread (``await
feeder.drain()`` waits for it).

``meta_tools(registry, dispatcher)`` returns the two ``LocalTool``s the aggregate serves
(``/mcp?expose=search`` lists only them): ``find_tools`` searches with the caller's grants
applied, ``call_tool`` runs the named tool through ``Dispatcher.call_tool`` — the same
pipeline (auth, validation, rate limit, cache, episodes) as a direct call.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

import anyio
import mcp.types as mt

from router.aggregate import LocalTool
from router.catalog import ToolEntry
from router.dispatch import Dispatcher
from router.embedding_store import default_store
from router.registry import SearchHit, ToolRecord, ToolRegistry
from vsm_mcp.auth import Principal, grants
from vsm_mcp.config import Settings
from vsm_mcp.embeddings import make_embedder
from vsm_mcp.errors import InvalidArguments

log = logging.getLogger(__name__)

MAX_LIMIT = 50


def record_of(entry: ToolEntry) -> ToolRecord:
    """The registry's view of a catalog entry."""
    return ToolRecord(
        server=entry.server,
        name=entry.name,
        public_name=entry.public_name,
        title=entry.title or "",
        description=entry.description,
        input_schema=entry.input_schema,
        annotations=entry.annotations,
        tags=entry.tags,
        available=entry.available,
        schema_hash=entry.schema_hash,
    )


class RegistryFeeder:
    """A catalog listener that mirrors every server's tools into a ``ToolRegistry``."""

    def __init__(self, registry: ToolRegistry) -> None:
        self.registry = registry
        self._pending: dict[str, list[ToolRecord]] = {}
        self._cond = threading.Condition()
        self._busy = False
        self.errors = 0

    def on_change(self, server: str, tools: list[ToolEntry]) -> None:
        records = [record_of(e) for e in tools]
        with self._cond:
            if not self._busy and not self._pending and self.registry.has_vectors(records):
                self._apply(server, records)  # cheap: no model run (availability flip, known tools)
                return
            self._pending[server] = records  # a newer list for the same server replaces an older one
            if not self._busy:
                self._busy = True
                threading.Thread(target=self._work, name="registry-feeder", daemon=True).start()

    def _apply(self, server: str, records: list[ToolRecord]) -> None:
        try:
            if records:
                self.registry.replace_server(server, records)
            else:
                self.registry.remove_server(server)
        except Exception:  # keep serving the previous index rather than lose search entirely
            self.errors += 1
            log.exception("indexing the tools of %s failed", server)

    def _work(self) -> None:
        while True:
            with self._cond:
                if not self._pending:
                    self._busy = False
                    self._cond.notify_all()
                    return
                server = next(iter(self._pending))
                records = self._pending.pop(server)
            self._apply(server, records)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every pending change is indexed; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy and not self._pending, timeout)

    async def drain(self, timeout: float = 600.0) -> bool:
        """``wait_idle`` for async callers (runs on a thread, never blocks the event loop)."""
        return await anyio.to_thread.run_sync(self.wait_idle, timeout)


def build_registry(settings: Settings) -> ToolRegistry:
    """The registry the router uses: ``VSM_EMBEDDER``, ``VSM_SEARCH_FUSION``, vectors under ``VSM_HOME``."""
    embedder = make_embedder(settings.embedder)
    store = default_store(settings.home, embedder.name, embedder.dim)
    return ToolRegistry(embedder, store=store, fusion=settings.search_fusion)


def attach_registry(settings: Settings, catalog: Any) -> tuple[ToolRegistry, RegistryFeeder]:
    """A registry fed by ``catalog`` (a router/catalog.py ``Catalog``) from now on."""
    registry = build_registry(settings)
    feeder = RegistryFeeder(registry)
    catalog.add_listener(feeder)
    for server in {e.server for e in catalog.tools()}:
        feeder.on_change(server, catalog.server_tools(server))
    return registry, feeder


def install_meta_tools(aggregate: Any, registry: ToolRegistry, dispatcher: Dispatcher) -> None:
    """Serve ``find_tools`` and ``call_tool`` on a router/aggregate.py ``Aggregate``."""
    for tool in meta_tools(registry, dispatcher):
        aggregate.add_local_tool(tool)


FIND_TOOLS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "minLength": 1, "description": "What you want to do, in plain words."},
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
    out: dict[str, Any] = {"name": rec.public_name, "server": rec.server, "score": round(hit.score, 4)}
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


def find_tools(
    registry: ToolRegistry, principal: Principal, query: str, limit: int = 5,
    server: str | None = None, tags: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Search hits as JSON objects; tools ``principal`` may not call are never included."""
    hits = registry.search(
        query, limit=limit, server=server, tags=tags, allowed=lambda r: grants(principal.scopes, r.tags)
    )
    return [_hit_json(h) for h in hits]


def meta_tools(registry: ToolRegistry, dispatcher: Dispatcher) -> list[LocalTool]:
    """``find_tools`` and ``call_tool`` for ``Aggregate.add_local_tool``."""

    async def find_handler(principal: Principal, arguments: dict[str, Any]) -> mt.CallToolResult:
        query, limit, server, tags = parse_find_args(arguments)
        tools = find_tools(registry, principal, query, limit, server, tags)
        payload = {"tools": tools}
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
                "Returns the best matches with their names, descriptions, input schemas and scores; "
                "call one with call_tool."
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
