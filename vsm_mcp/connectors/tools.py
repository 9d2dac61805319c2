"""The connector tools, registered on a server for its own family of types (``cms``: the CMSs,
``drive``: Google Drive): connector_add / list / sync / status / remove, plus the read tools
``<prefix>_get`` and ``<prefix>_search`` over the containers its connectors synced (through the
content layer's tools, so container policies and the caller's grants apply)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, Protocol, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

from vsm_mcp.connectors import store, sync
from vsm_mcp.connectors.credentials import check_refs
from vsm_mcp.connectors.tables import ConnectorRow
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import InvalidArguments, NotFound

READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, idempotent_hint=False, destructive_hint=False, open_world_hint=False)
SYNC = ToolAnnotations(read_only_hint=False, idempotent_hint=True, destructive_hint=True, open_world_hint=True)
DELETE = ToolAnnotations(read_only_hint=False, idempotent_hint=True, destructive_hint=True, open_world_hint=False)
P = ParamSpec("P")
R = TypeVar("R")


class ErrorWrapper(Protocol):
    """``servers.tool_errors.tool_errors`` (passed in: the kernel does not import servers)."""

    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Callable[P, Awaitable[R]]: ...


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
OWNER_KEY = "connectors.owner"


def connector_server(ctx: ServerContext, name: str, types: Sequence[str], instructions: str,
                     tool_errors: ErrorWrapper, label: str = "") -> MCPServer:
    """The MCP server ``name`` (``cms``, ``drive``): the connector tools for ``types``, read tools
    named ``<name>_get`` / ``<name>_search``, ``label`` in their titles (see ``register_tools``).
    The servers of one context share one SyncEngine (``sync.engine_of``); the first one built owns
    it and closes it when its lifespan ends (the others leave it alone, so it is closed once)."""
    holder: list[sync.SyncEngine] = []

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if holder and ctx.extras.get(OWNER_KEY) == name:
                ctx.extras.pop(OWNER_KEY, None)
                await holder[0].aclose()
                ctx.extras.pop(sync.EXTRAS_KEY, None)

    server = MCPServer(name, instructions=instructions, lifespan=lifespan)
    holder.append(register_tools(server, ctx, types, name, tool_errors, label=label))
    ctx.extras.setdefault(OWNER_KEY, name)
    return server


def register_tools(server: MCPServer, ctx: ServerContext, types: Sequence[str], prefix: str,
                   tool_errors: ErrorWrapper, label: str = "") -> sync.SyncEngine:
    """Add the connector tools for ``types`` to ``server``; ``prefix`` names the read tools and
    ``label`` the sources in their titles (what a user searching for the tool would name)."""
    what = label or ", ".join(types)
    engine = sync.engine_of(ctx)
    kinds = list(types)

    async def principal(mcp_ctx: Context) -> Any:
        return await ctx.principal_of(mcp_ctx)

    @server.tool(title=f"Connect a {what} source: add a connector that imports its content", annotations=WRITE)
    @tool_errors
    async def connector_add(name: str, type: str, base_url: str, mcp_ctx: Context,
                            credentials: dict[str, str] | None = None,
                            options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Configure a connector of this server's types (see the server's instructions); ``credentials``
        only as environment references ({"token": "${MY_TOKEN}"}), resolved at each request and never
        stored in clear; ``options`` per type (contentful: space, environment). Requests pass the SSRF
        guard: a private or loopback ``base_url`` needs VSM_FETCH_ALLOW."""
        if not NAME.match(name):
            raise InvalidArguments("name must be 1-100 characters of letters, digits, '_', '.', '-'")
        if type not in kinds:
            raise InvalidArguments(f"type must be one of {', '.join(kinds)}, not {type!r}")
        if not re.match(r"^https?://[^/\s]+", base_url):
            raise InvalidArguments(f"base_url must be an http(s) URL, not {base_url!r}")
        refs = check_refs(name, credentials)
        sync.TYPES[type].validate(base_url, refs, dict(options or {}))
        p = await principal(mcp_ctx)
        await store.add(ctx.db, ConnectorRow(tenant_id=p.tenant_id, name=name, type=type,
                                             base_url=base_url.rstrip("/"), credentials=refs, options=dict(options or {})))
        return sync.status_dict(await store.get(ctx.db, p.tenant_id, name))


    @server.tool(title=f"List the {what} connectors", annotations=READ)
    @tool_errors
    async def connector_list(mcp_ctx: Context) -> dict[str, Any]:
        """The caller's connectors of this server: name, type, state, last sync, last error."""
        p = await principal(mcp_ctx)
        return {"connectors": [sync.status_dict(r) for r in await store.list_(ctx.db, p.tenant_id, kinds)]}

    @server.tool(title=f"Sync a {what} connector now: import new and changed content", annotations=SYNC)
    @tool_errors
    async def connector_sync(name: str, mcp_ctx: Context, full: bool = False, wait: bool = False) -> dict[str, Any]:
        """Sync a connector (a durable workflow, one step per page): incremental from its saved cursor
        by default, ``full=true`` to start over (items no longer at the source are then deleted).
        ``wait``: answer when it has finished (or after VSM_CONTENT_WAIT_S) with connector_status."""
        p = await principal(mcp_ctx)
        await store.get(ctx.db, p.tenant_id, name, kinds)
        started = await sync.start(engine, p, name, full)
        if wait:
            return {**await sync.wait(engine, p.tenant_id, name, ctx.settings.content_wait_s), "sync": started["sync"]}
        return started

    @server.tool(title=f"Status of a {what} connector and its last sync", annotations=READ)
    @tool_errors
    async def connector_status(name: str, mcp_ctx: Context) -> dict[str, Any]:
        """A connector's state (idle, running, failed), cursor, syncs, counts of the last sync, items
        held, last sync time and last error."""
        p = await principal(mcp_ctx)
        out = sync.status_dict(await store.get(ctx.db, p.tenant_id, name, kinds))
        out["items"] = len(await store.all_items(ctx.db, p.tenant_id, name))
        return out

    @server.tool(title=f"Remove a {what} connector (and the content it synced)", annotations=DELETE)
    @tool_errors
    async def connector_remove(name: str, mcp_ctx: Context, delete_containers: bool = True) -> dict[str, Any]:
        """Remove a connector and (by default) the containers it synced."""
        p = await principal(mcp_ctx)
        await store.get(ctx.db, p.tenant_id, name, kinds)
        removed = 0
        if delete_containers:
            spec = {"tenant": p.tenant_id, "scopes": sorted(p.scopes), "key": p.key_id, "name": name}
            removed = await sync._delete(engine, spec, await store.all_items(ctx.db, p.tenant_id, name))
        await store.remove(ctx.db, p.tenant_id, name)
        return {"connector": name, "removed": True, "containers_deleted": removed}

    async def get(key: str, mcp_ctx: Context, connector: str | None) -> dict[str, Any]:
        p = await principal(mcp_ctx)
        item = await store.item_by_container(ctx.db, p.tenant_id, connector, key)
        if item is None:
            raise NotFound(f"no synced item {key!r}")
        await store.get(ctx.db, p.tenant_id, item.connector, kinds)
        res = await ctx.tools.call(p, "content__container_get",
                                   {"container_id": item.container_id, "include_text": True}, source="connector")
        if res.is_error:
            raise NotFound(" ".join(getattr(c, "text", "") for c in res.content))
        return {"connector": item.connector, "external_id": item.external_id, **dict(res.structured_content or {})}

    async def search(query: str, mcp_ctx: Context, connector: str | None, k: int) -> dict[str, Any]:
        p = await principal(mcp_ctx)
        names = [r.name for r in await store.list_(ctx.db, p.tenant_id, kinds)]
        if connector is not None:
            if connector not in names:
                raise NotFound(f"no connector {connector!r}")
            names = [connector]
        if not 1 <= k <= 50:
            raise InvalidArguments(f"k must be in 1..50, got {k}")
        res = await ctx.tools.call(p, "content__container_search", {"query": query, "k": min(100, k * 4)},
                                   source="connector")
        if res.is_error:
            raise InvalidArguments(" ".join(getattr(c, "text", "") for c in res.content))
        prefixes = tuple(f"{n}:" for n in names)
        hits = [h for h in (res.structured_content or {}).get("results", []) if str(h.get("source", "")).startswith(prefixes)]
        for h in hits:
            h["connector"], _, h["external_id"] = str(h["source"]).partition(":")
        return {"query": query, "results": hits[:k]}

    async def cms_get(key: str, mcp_ctx: Context, connector: str | None = None) -> dict[str, Any]:
        """One synced item with its text: ``key`` is its container id or its source id (e.g.
        ``post/42``; give ``connector`` when several connectors may hold that id)."""
        return await get(key, mcp_ctx, connector)

    async def cms_search(query: str, mcp_ctx: Context, connector: str | None = None, k: int = 10) -> dict[str, Any]:
        """The ``k`` synced items that best match ``query`` (hybrid search over the containers of
        this server's connectors, or of one ``connector``), with snippets."""
        return await search(query, mcp_ctx, connector, k)

    server.tool(name=f"{prefix}_get", title=f"Get one synced {what} item with its text", annotations=READ)(
        tool_errors(cms_get)
    )
    server.tool(name=f"{prefix}_search", title=f"Search the synced {what} content", annotations=READ)(
        tool_errors(cms_search)
    )
    return engine
