"""ASGI assembly: one Starlette app with the MCP endpoints, the edge routes and the lifespan.

Routes (``routes`` in ``create_app`` — edge engineers append theirs there):

* ``/mcp``            the aggregate (streamable HTTP), router/aggregate.py
* ``/mcp/{server}``   one upstream, transparent (original names), router/proxy.py
* ``/sse`` + ``/messages/``  the aggregate over the legacy HTTP+SSE transport
* ``/healthz``, ``/readyz``

Every route is declared with ``gated_route`` / ``gated_mount`` (router/gate/route.py) and runs
behind the app's one gate (``app.state.gate``: browser rules, authentication, limits, scopes,
policy, audit); only /healthz, /readyz, /metrics and the console's static files are public.
``app.state`` also carries ``ctx`` (ServerContext), ``runtime``, ``dispatcher``, ``upstreams``,
``catalog`` and ``aggregate``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from router.aggregate import Aggregate
from router.edge.assembly import Edge, catalog_lister
from router.edge.audit_http import audit_endpoint
from router.edge.console import console_routes
from router.edge.metrics import add_cache_collector, add_recorder_collector
from router.edge.openai import openai_routes
from router.edge.route_metrics import RouteMetrics
from router.edge.storage_http import storage_routes
from router.edge.tools_rest import tools_routes
from router.edge.upstreams_rest import upstreams_routes
from router.fastlane.fastpath import FastPath
from router.gate.admin_http import admin_routes
from router.gate.authn import make_authenticator, principal_of, send_error
from router.gate.gate import build_gate
from router.gate.route import JSONRPC, TOOL_CALL, gated_mount, gated_route
from router.gate.sessions import SessionLimit
from router.meta_tools import install_meta_tools
from router.proxy import ProxySet
from router.runtime import RouterRuntime
from router.upstreams.manifest import UpstreamSpec
from vsm_mcp.auth import Principal
from vsm_mcp.config import Settings
from vsm_mcp.context import ServerContext
from vsm_mcp.durable import serve_queues
from vsm_mcp.errors import Internal, Unauthorized
from vsm_mcp.policy.service import authorizer_of


async def _http_principal(ctx: Any) -> Principal:
    request = getattr(ctx, "request", None)
    principal = principal_of(request.scope) if request is not None else None
    if principal is None:
        raise Unauthorized("no authenticated principal on this request")
    return principal


def create_app(settings: Settings, ctx: ServerContext | None = None, *, specs: list[UpstreamSpec] | None = None) -> Starlette:
    ctx = ctx or ServerContext.create(settings)
    runtime = RouterRuntime(ctx, specs, durable_role="serve", durable_queues=serve_queues(settings))
    authenticator = make_authenticator(settings, ctx.db, ctx.bus)
    edge = Edge(  # router/edge/: SSE events, /metrics, /healthz, /readyz, Telegram
        settings, ctx,
        call_tool=lambda p, name, args: runtime.dispatcher.call_tool(p, name, args, source="telegram"),
        list_tools=catalog_lister(runtime.catalog.tools), readiness=runtime.readiness,
    )
    runtime.dispatcher.add_observer(edge.observer)
    if runtime.tool_cache is not None:
        add_cache_collector(edge.metrics, runtime.tool_cache.stats)
    policy = authorizer_of(ctx)  # tenant policies (WASM) at the authorize step, vsm_mcp/policy
    runtime.dispatcher.add_authorizer(policy)
    # The gate runs the dispatcher's own authorizers and recorder: one policy step, one audit trail.
    gate = build_gate(settings, authenticator.authenticate, authorizers=runtime.dispatcher.authorizers,
                      recorder=runtime.dispatcher.recorder, metrics=edge.metrics)
    aggregate = Aggregate(runtime.catalog, runtime.dispatcher, _http_principal, expose=settings.expose)
    install_meta_tools(aggregate, runtime.tool_search, runtime.dispatcher)  # find_tools / call_tool (issue 5)
    manager = StreamableHTTPSessionManager(
        app=aggregate.server,
        max_request_body_size=settings.max_body_bytes,
        session_idle_timeout=settings.session_idle_s,
    )
    sessions = SessionLimit(manager.handle_request, manager, settings.max_sessions_per_principal)
    proxies = ProxySet(runtime, _http_principal, max_body_bytes=settings.max_body_bytes)
    sse = SseServerTransport("/messages/")
    fast = FastPath(runtime.dispatcher, aggregate, manager, max_body_bytes=settings.max_body_bytes)
    fast.sdk = sessions  # what the lane hands to the SDK passes the session cap too

    async def mcp_aggregate(scope: Scope, receive: Receive, send: Send) -> None:
        scope["user"] = sessions.user_of(scope)  # sessions belong to the principal that opened them
        if not await fast.handle(scope, receive, send):
            await sessions(scope, receive, send)

    async def mcp_server(scope: Scope, receive: Receive, send: Send) -> None:
        await proxies.handle(scope["path_params"]["server"], scope, receive, send)

    async def sse_connect(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with sse.connect_sse(scope, receive, send) as (read, write):
                await aggregate.server.run(read, write, aggregate.server.create_initialization_options())
        except Exception as exc:  # a broken SSE client must not surface as a server error
            await send_error(send, Internal(f"SSE session failed: {exc}"))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await ctx.bus.start()
        async with AsyncExitStack() as stack:
            stack.push_async_callback(ctx.aclose)
            await edge.start()
            stack.push_async_callback(edge.aclose)
            await authenticator.start()  # follows key revocations (bus) and polls for them (backstop)
            stack.push_async_callback(authenticator.aclose)
            stack.push_async_callback(gate.aclose)
            await policy.start()  # follows policy.changed: policy updates apply without a restart
            stack.push_async_callback(policy.aclose)
            tg = await stack.enter_async_context(anyio.create_task_group())
            try:
                await runtime.start(tg)
                runtime.add_notification_listener(proxies.on_upstream_notification)
                runtime.catalog.add_listener(_ListChanged(aggregate, tg))
                await stack.enter_async_context(manager.run())
                await proxies.start(stack, tg)
                yield
            finally:
                await runtime.aclose()
                await proxies.aclose()
                tg.cancel_scope.cancel()

    def mcp_route(path: str, endpoint: Any, methods: list[str], name: str) -> BaseRoute:
        """An MCP endpoint: its tool calls are gated per call in dispatch; errors are JSON-RPC."""
        return gated_route(path, endpoint, methods=methods, capability=TOOL_CALL, render=JSONRPC, asgi=True, name=name)

    aggregate_route = mcp_route("/mcp", mcp_aggregate, ["GET", "POST", "DELETE"], "mcp")
    routes: list[BaseRoute] = [
        aggregate_route,
        mcp_route("/mcp/{server}", mcp_server, ["GET", "POST", "DELETE"], "mcp_server"),
        mcp_route("/sse", sse_connect, ["GET"], "sse"),
        gated_mount("/messages/", sse.handle_post_message, capability=TOOL_CALL, render=JSONRPC, name="messages"),
        # Edge routes (router/edge/) are appended below this line; each declares itself to the gate.
        *edge.routes(),
        *console_routes(),  # /console: static pages; their data comes from the API routes below
        *storage_routes(ctx),  # /v1/storage
        gated_route(  # GET /v1/audit: the caller's tenant's episodes (vsm_mcp/audit.py)
            "/v1/audit", audit_endpoint(ctx.db), methods=["GET"], capability="audit:read", action="audit__audit_read",
            name="audit",
        ),
        *tools_routes(runtime.tool_search, dispatcher=runtime.dispatcher, max_body_bytes=settings.max_body_bytes),
        # /v1/upstreams, /v1/tool-overrides, /v1/upstream-secrets: each an admin__* tool call (issue 27)
        *upstreams_routes(runtime.dispatcher, settings.max_body_bytes),
        # /v1/chat/completions, /v1/embeddings, /v1/models (served by the built-in llm server's engine)
        *openai_routes(ctx, metrics=edge.metrics),
        *admin_routes(ctx.db, ctx.bus),  # /v1/admin/keys
    ]

    add_recorder_collector(edge.metrics, runtime.recorder)  # vsm_episodes{state} in /metrics
    app = _RouterApp(routes=routes, lifespan=lifespan)
    # Per-route request counters and latency; /mcp's fast lane bypasses Starlette's router, so it
    # is counted by a wrapper with a fixed route label.
    app.add_middleware(RouteMetrics, metrics=edge.metrics)
    app.hot_path = RouteMetrics(aggregate_route.app, edge.metrics, route="/mcp")  # type: ignore[attr-defined]  # gated /mcp
    app.hot_max_body = settings.max_body_bytes
    app.state.ctx = ctx
    app.state.runtime = runtime
    app.state.dispatcher = runtime.dispatcher
    app.state.upstreams = runtime.upstreams
    app.state.catalog = runtime.catalog
    app.state.aggregate = aggregate
    app.state.router_fastpath = fast
    app.state.authenticator = authenticator
    app.state.gate = gate
    app.state.edge = edge
    app.state.metrics = edge.metrics
    return app


class _RouterApp(Starlette):
    """Starlette, except that requests to exactly ``/mcp`` skip its middleware and routing layers
    (about 5 % of the router's CPU per call): the aggregate endpoint handles its own errors as
    JSON-RPC, and uvicorn answers 500 for anything that escapes before a response started."""

    hot_path: Any = None
    hot_max_body = 0  # the hot lane buffers a request body whole: only declared lengths up to this

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hot_path is not None and scope["type"] == "http" and scope["path"] == "/mcp":
            scope["app"] = self
            await self.hot_path(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class _ListChanged:
    """Catalog listener: forward tool-list changes to the aggregate's connected clients."""

    def __init__(self, aggregate: Aggregate, tg: Any) -> None:
        self.aggregate = aggregate
        self.tg = tg
        self.started = False

    def on_change(self, server: str, tools: list[Any]) -> None:
        self.tg.start_soon(self.aggregate.notify_tools_changed)
