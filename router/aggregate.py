"""The aggregate MCP server: every upstream's tools as ``<server>__<tool>``, their prompts
(namespaced the same way) and resources (URIs kept), all calls through the Dispatcher.

Served over streamable HTTP at ``/mcp`` (router/app.py), legacy SSE at ``/sse`` and stdio
(``vsm-mcp stdio``). The caller's principal comes from ``principal_of(ctx)``: the HTTP scope
set by router/gate/authn.py, or the fixed principal of a stdio run.

Extension points for the registry (issue 5) and others:

* ``add_local_tool(LocalTool(name, description, input_schema, handler))`` — tools served by the
  router itself (``find_tools`` / ``call_tool``); ``handler(principal, arguments)`` returns a
  ``CallToolResult`` (or raises a ``VsmError``).
* expose mode per request: ``/mcp?expose=all|search|both`` (default ``VSM_EXPOSE``): ``all`` lists
  upstream tools only, ``search`` only the local tools, ``both`` both.

``tools/list`` is served from the catalog and the serialized list is cached by
(catalog version, expose mode, principal scopes): no upstream round trip, no re-serialization.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import mcp.types as mt
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from router.dispatch import Dispatcher
from router.registry.catalog import Catalog
from vsm_mcp.auth import Principal, grants
from vsm_mcp.errors import Internal, InvalidArguments, NotFound, VsmError

log = logging.getLogger(__name__)

EXPOSE_MODES = ("all", "search", "both")
LocalHandler = Callable[[Principal, dict[str, Any]], Awaitable[mt.CallToolResult]]
LogFn = Callable[[str, Any, "str | None"], Awaitable[None]]
LEVELS = {name: i for i, name in enumerate(
    ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"))}


@dataclass(frozen=True)
class LocalTool:
    """A tool the router serves itself (no upstream), e.g. the registry's meta-tools."""

    name: str
    description: str
    input_schema: dict[str, Any]
    handler: LocalHandler
    title: str | None = None
    annotations: mt.ToolAnnotations | None = None

    def tool(self) -> mt.Tool:
        return mt.Tool(
            name=self.name, title=self.title, description=self.description,
            input_schema=self.input_schema, annotations=self.annotations,
        )


def to_mcp_error(exc: VsmError) -> MCPError:
    err = exc.to_jsonrpc()
    return MCPError(code=err["code"], message=err["message"], data=err.get("data"))


class _AggregateServer(Server[Any]):
    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        opts = notification_options or NotificationOptions(True, True, True)
        return super().create_initialization_options(opts, experimental_capabilities, extensions)


PrincipalOf = Callable[[Any], Awaitable[Principal]]


class Aggregate:
    """Builds and holds the aggregate ``Server``; see the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        dispatcher: Dispatcher,
        principal_of: PrincipalOf,
        *,
        expose: str = "both",
        source: str = "mcp",
    ) -> None:
        if expose not in EXPOSE_MODES:
            raise InvalidArguments(f"expose must be one of {', '.join(EXPOSE_MODES)} (got {expose!r})")
        self.catalog = catalog
        self.dispatcher = dispatcher
        self.principal_of = principal_of
        self.expose = expose
        self.source = source
        self.local_tools: dict[str, LocalTool] = {}
        self._list_cache: dict[tuple[int, int, str, frozenset[str], str | None], dict[str, Any]] = {}
        self._local_version = 0
        self._list_bytes: dict[int, tuple[dict[str, Any], bytes]] = {}
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        # logging/setLevel per downstream session: applied to upstream log messages relayed to it.
        self._levels: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self.log_sessions: set[str] = set()  # Mcp-Session-Ids that asked for logs: the fast lane
        # (one JSON answer, no stream) leaves their calls to the SDK path, which can relay logs.
        self.server = self._build()

    # --- extension points ----------------------------------------------------------------
    def add_local_tool(self, tool: LocalTool) -> None:
        self.local_tools[tool.name] = tool
        self._local_version += 1
        self._list_cache.clear()

    def expose_mode(self, ctx: Any) -> str:
        request = getattr(ctx, "request", None)
        if request is not None:
            mode = request.query_params.get("expose")
            if mode:
                if mode not in EXPOSE_MODES:
                    raise to_mcp_error(InvalidArguments(f"expose must be one of {', '.join(EXPOSE_MODES)}"))
                return str(mode)
        return self.expose

    async def notify_tools_changed(self) -> None:
        """Tell every connected client that the tool list changed (after an upstream's list_changed)."""
        for conn in list(self._connections):
            try:
                with anyio.move_on_after(2):
                    await conn.send_tool_list_changed()
            except Exception as exc:  # a gone client must not stop the others
                log.debug("list_changed to a client failed: %s", exc)

    # --- handlers ------------------------------------------------------------------------
    def _build(self) -> Server[Any]:
        server = _AggregateServer(
            "vsm-mcp",
            version="0.1.0",
            instructions="vsm-mcp aggregates many MCP servers; tools are named <server>__<tool>.",
            on_call_tool=self._call_tool,
            on_list_prompts=self._list_prompts,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
        )
        # Remember every connection (the fast lane bypasses the handlers): list_changed goes to all.
        server.middleware.append(self._track_connection)
        # Handlers returning pre-serialized dicts (the runner accepts them; no model round trip).
        server.add_request_handler("tools/list", mt.PaginatedRequestParams, self._list_tools)
        server.add_request_handler("prompts/get", mt.GetPromptRequestParams, self._get_prompt)
        server.add_request_handler("resources/read", mt.ReadResourceRequestParams, self._read_resource)
        server.add_request_handler("completion/complete", mt.CompleteRequestParams, self._complete)
        server.add_request_handler("logging/setLevel", mt.SetLevelRequestParams, self._set_level)
        return server

    async def _track_connection(self, ctx: Any, call_next: Any) -> Any:
        conn = getattr(ctx.session, "_connection", None)
        if conn is not None:
            self._connections.add(conn)
        return await call_next(ctx)

    async def _principal(self, ctx: Any) -> Principal:
        conn = getattr(ctx.session, "_connection", None)
        if conn is not None:
            self._connections.add(conn)
        try:
            return await self.principal_of(ctx)
        except VsmError as exc:
            raise to_mcp_error(exc) from None

    async def _list_tools(self, ctx: Any, params: Any) -> dict[str, Any]:
        principal = await self._principal(ctx)
        mode = self.expose_mode(ctx)
        if getattr(ctx, "protocol_version", "") in MODERN_PROTOCOL_VERSIONS:
            return self.tools_payload_modern(principal, mode)
        return self.tools_payload(principal, mode)

    def tools_payload_modern(self, principal: Principal, mode: str) -> dict[str, Any]:
        """``tools_payload`` in the 2026-07-28 envelope: a result type and freshness hints. The list
        depends on the caller's grants, so it is private and not to be reused by a shared cache."""
        return {"resultType": "complete", "ttlMs": 0, "cacheScope": "private", **self.tools_payload(principal, mode)}

    def tools_payload(self, principal: Principal, mode: str) -> dict[str, Any]:
        """The ``tools/list`` result for ``principal`` in expose ``mode``, built once per catalog version."""
        view = self.catalog.view_of(principal.tenant_id)  # None: the global view most tenants share
        key = (self.catalog.version, self._local_version, mode, principal.scopes, view)
        cached = self._list_cache.get(key)
        if cached is None:
            tools: list[dict[str, Any]] = []
            if mode in ("all", "both") or not self.local_tools:
                tools += [
                    e.public_tool().model_dump(by_alias=True, mode="json", exclude_none=True)
                    for e in self.catalog.tools(view)
                    if grants(principal.scopes, e.tags)
                ]
            if mode in ("search", "both"):
                tools += [t.tool().model_dump(by_alias=True, mode="json", exclude_none=True) for t in self.local_tools.values()]
            if len(self._list_cache) > 256:
                self._list_cache.clear()
                self._list_bytes.clear()
            cached = self._list_cache[key] = {"tools": tools}
        return cached

    def tools_payload_json(self, principal: Principal, mode: str) -> bytes:
        """``tools_payload`` serialized once (the fast lane answers tools/list with these bytes)."""
        payload = self.tools_payload(principal, mode)
        raw = self._list_bytes.get(id(payload))
        if raw is None or raw[0] is not payload:
            raw = self._list_bytes[id(payload)] = (payload, json.dumps(payload, separators=(",", ":")).encode())
        return raw[1]

    async def _set_level(self, ctx: Any, params: mt.SetLevelRequestParams) -> dict[str, Any]:
        await self._principal(ctx)
        conn = getattr(ctx.session, "_connection", None)
        if conn is not None:
            self._levels[conn] = LEVELS.get(str(params.level), 0)
        request = getattr(ctx, "request", None)
        sid = request.headers.get("mcp-session-id") if request is not None else None
        if sid:
            if len(self.log_sessions) > 100_000:
                self.log_sessions.clear()
            self.log_sessions.add(sid)
        return {}

    async def _call_tool(self, ctx: Any, params: mt.CallToolRequestParams) -> mt.CallToolResult:
        principal = await self._principal(ctx)
        try:
            local = self.local_tools.get(params.name)
            if local is not None:
                return await local.handler(principal, params.arguments or {})
            conn = getattr(ctx.session, "_connection", None)
            level = self._levels.get(conn) if conn is not None else None
            return await self.dispatcher.call_tool(
                principal, params.name, params.arguments or {}, source=self.source, progress=_progress_forwarder(ctx),
                notify=_log_forwarder(ctx, level), trace=trace_of(ctx),
            )
        except VsmError as exc:
            raise to_mcp_error(exc) from None

    async def _list_prompts(self, ctx: Any, params: Any) -> mt.ListPromptsResult:
        await self._principal(ctx)
        return mt.ListPromptsResult(
            prompts=[e.prompt.model_copy(update={"name": e.public_name}) for e in self.catalog.prompts()]
        )

    async def _forward(self, server: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        up = self.dispatcher.upstreams.get(server)
        if up is None:
            raise to_mcp_error(NotFound(f"upstream {server!r} is not mounted"))
        try:
            return await up.request(method, params)
        except VsmError as exc:
            raise to_mcp_error(exc) from None

    async def _get_prompt(self, ctx: Any, params: mt.GetPromptRequestParams) -> dict[str, Any]:
        principal = await self._principal(ctx)
        try:
            entry = self.catalog.resolve_prompt(params.name)
        except VsmError as exc:
            raise to_mcp_error(exc) from None
        body: dict[str, Any] = {"name": entry.name, "_meta": self.dispatcher.meta_for(principal)}
        if params.arguments:
            body["arguments"] = params.arguments
        return await self._forward(entry.server, "prompts/get", body)

    async def _list_resources(self, ctx: Any, params: Any) -> mt.ListResourcesResult:
        await self._principal(ctx)
        return mt.ListResourcesResult(resources=[r for _s, r in self.catalog.resources()])

    async def _list_templates(self, ctx: Any, params: Any) -> mt.ListResourceTemplatesResult:
        await self._principal(ctx)
        return mt.ListResourceTemplatesResult(resource_templates=[t for _s, t in self.catalog.templates()])

    async def _read_resource(self, ctx: Any, params: mt.ReadResourceRequestParams) -> dict[str, Any]:
        principal = await self._principal(ctx)
        try:
            server = self.catalog.resource_server(str(params.uri))
        except VsmError as exc:
            raise to_mcp_error(exc) from None
        return await self._forward(
            server, "resources/read", {"uri": str(params.uri), "_meta": self.dispatcher.meta_for(principal)}
        )

    async def _complete(self, ctx: Any, params: mt.CompleteRequestParams) -> dict[str, Any]:
        await self._principal(ctx)
        body = params.model_dump(by_alias=True, mode="json", exclude_none=True)
        ref = params.ref
        try:
            if isinstance(ref, mt.PromptReference):
                entry = self.catalog.resolve_prompt(ref.name)
                body["ref"] = {"type": "ref/prompt", "name": entry.name}
                server = entry.server
            else:
                server = self.catalog.resource_server(str(ref.uri))
        except VsmError as exc:
            raise to_mcp_error(exc) from None
        return await self._forward(server, "completion/complete", body)


def _progress_forwarder(ctx: Any) -> Callable[[float, float | None, str | None], Awaitable[None]] | None:
    """A progress callback relaying upstream progress to this request's progressToken, if any."""
    meta = ctx.meta or ctx.params and ctx.params.get("_meta")
    token = None
    if isinstance(meta, dict):
        token = meta.get("progress_token", meta.get("progressToken"))
    if token is None:
        return None
    session, request_id = ctx.session, ctx.request_id

    async def forward(progress: float, total: float | None, message: str | None) -> None:
        try:
            await session.send_progress_notification(token, progress, total, message, related_request_id=request_id)
        except Exception as exc:  # the client went away; the call itself goes on
            log.debug("progress relay failed: %s", exc)

    return forward


def _log_forwarder(ctx: Any, min_level: int | None) -> LogFn:
    """A callback relaying an upstream's log message to this request's client, at or above the
    session's logging/setLevel (all levels when it set none)."""
    session, request_id = ctx.session, ctx.request_id

    async def forward(level: str, data: Any, logger: str | None) -> None:
        if min_level is not None and LEVELS.get(level, len(LEVELS)) < min_level:
            return
        try:
            await session.send_log_message(level, data, logger, related_request_id=request_id)
        except Exception as exc:  # the client went away; the call itself goes on
            log.debug("log relay failed: %s", exc)

    return forward


def trace_of(ctx: Any) -> tuple[str, str] | None:
    """(traceparent, tracestate) a request carries: in its ``_meta`` (the 2026-07-28 revision's
    place), else in the HTTP headers of the request that brought it; None without one."""
    meta = ctx.meta or (ctx.params and ctx.params.get("_meta"))
    if isinstance(meta, dict) and isinstance(meta.get("traceparent"), str):
        state = meta.get("tracestate")
        return meta["traceparent"], state if isinstance(state, str) else ""
    request = getattr(ctx, "request", None)
    headers = getattr(request, "headers", None)
    if headers is not None and headers.get("traceparent"):
        return str(headers["traceparent"]), str(headers.get("tracestate", ""))
    return None


def internal(message: str) -> MCPError:
    return to_mcp_error(Internal(message))
