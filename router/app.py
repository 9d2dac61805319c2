"""ASGI assembly: one Starlette app with the MCP endpoints, the edge routes and the lifespan.

Routes (``routes`` in ``create_app`` — edge engineers append theirs there):

* ``/mcp``            the aggregate (streamable HTTP), router/aggregate.py
* ``/mcp/{server}``   one upstream, transparent (original names), router/proxy.py
* ``/sse`` + ``/messages/``  the aggregate over the legacy HTTP+SSE transport
* ``/healthz``, ``/readyz``

MCP routes are wrapped in ``HostOriginGuard`` (DNS-rebinding protection on loopback binds) and
``AuthMiddleware`` (Bearer API key → principal). ``app.state`` carries ``ctx`` (ServerContext),
``runtime``, ``dispatcher``, ``upstreams``, ``catalog`` and ``aggregate`` for the edge routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from router.aggregate import Aggregate
from router.edge.assembly import Edge, catalog_lister
from router.edge.audit_http import audit_endpoint
from router.edge.console import console_routes
from router.edge.metrics import add_cache_collector, add_recorder_collector
from router.edge.openai import openai_error_body, openai_routes
from router.edge.route_metrics import RouteMetrics
from router.edge.storage_http import storage_routes
from router.edge.tools_rest import tools_routes
from router.edge.upstreams_rest import upstreams_routes
from router.fastlane.fastpath import FastPath
from router.gate.authn import AuthMiddleware, authenticate, make_authenticator, principal_of, send_error
from router.gate.guard import HostOriginGuard
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

SESSION_IDLE_S = 30 * 60


async def _http_principal(ctx: Any) -> Principal:
    request = getattr(ctx, "request", None)
    principal = principal_of(request.scope) if request is not None else None
    if principal is None:
        raise Unauthorized("no authenticated principal on this request")
    return principal


class _AsgiEndpoint:
    """Adapts an ASGI callable so Starlette's Route treats it as an app (all methods)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def create_app(settings: Settings, ctx: ServerContext | None = None, *, specs: list[UpstreamSpec] | None = None) -> Starlette:
    ctx = ctx or ServerContext.create(settings)
    runtime = RouterRuntime(ctx, specs, durable_role="serve", durable_queues=serve_queues(settings))
    authenticator = make_authenticator(settings, ctx.db)
    edge = Edge(  # router/edge/: SSE events, /metrics, /healthz, /readyz, Telegram
        settings, ctx, authenticate=lambda conn: authenticate(conn.scope, authenticator),
        call_tool=lambda p, name, args: runtime.dispatcher.call_tool(p, name, args, source="telegram"),
        list_tools=catalog_lister(runtime.catalog.tools), readiness=runtime.readiness,
        guard=lambda a: HostOriginGuard(a, enabled=settings.is_loopback),
    )
    runtime.dispatcher.add_observer(edge.observer)
    if runtime.tool_cache is not None:
        add_cache_collector(edge.metrics, runtime.tool_cache.stats)
    policy = authorizer_of(ctx)  # tenant policies (WASM) at the authorize step, vsm_mcp/policy
    runtime.dispatcher.add_authorizer(policy)
    aggregate = Aggregate(runtime.catalog, runtime.dispatcher, _http_principal, expose=settings.expose)
    install_meta_tools(aggregate, runtime.tool_search, runtime.dispatcher)  # find_tools / call_tool (issue 5)
    manager = StreamableHTTPSessionManager(
        app=aggregate.server,
        max_request_body_size=settings.max_body_bytes,
        session_idle_timeout=SESSION_IDLE_S,
    )
    proxies = ProxySet(runtime, _http_principal, max_body_bytes=settings.max_body_bytes)
    sse = SseServerTransport("/messages/")
    fast = FastPath(runtime.dispatcher, aggregate, manager, max_body_bytes=settings.max_body_bytes)
    guard_on = settings.is_loopback

    def protect(app: Any) -> Any:
        return HostOriginGuard(AuthMiddleware(app, authenticator), enabled=guard_on)

    async def mcp_aggregate(scope: Scope, receive: Receive, send: Send) -> None:
        if not await fast.handle(scope, receive, send):
            await manager.handle_request(scope, receive, send)

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

    async def not_allowed(_request: Request) -> Response:
        return Response(status_code=405)

    aggregate_endpoint = protect(mcp_aggregate)
    routes: list[BaseRoute] = [
        Route("/mcp", _AsgiEndpoint(aggregate_endpoint)),
        Route("/mcp/{server}", _AsgiEndpoint(protect(mcp_server))),
        Route("/sse", _AsgiEndpoint(protect(sse_connect))),
        Mount("/messages/", app=protect(sse.handle_post_message)),
        # Edge routes (router/edge/) are appended below this line.
        *edge.routes(),
        *console_routes(),  # /console: static pages; their data comes from the API routes below
        *edge.limit_routes(storage_routes(ctx, lambda conn: authenticate(conn.scope, authenticator))),  # /v1/storage
        *edge.limit_routes([Route(  # GET /v1/audit: the caller's tenant's episodes (vsm_mcp/audit.py)
            "/v1/audit", audit_endpoint(ctx.db, lambda request: authenticate(request.scope, authenticator)),
            methods=["GET"],
        )]),
        *edge.limit_routes(tools_routes(  # GET /v1/tools, POST /v1/tools/{name}/call
            runtime.tool_search, lambda conn: authenticate(conn.scope, authenticator),
            runtime.dispatcher, settings.max_body_bytes,
        )),
        # /v1/upstreams, /v1/tool-overrides, /v1/upstream-secrets: each an admin__* tool call (issue 27)
        *edge.limit_routes(upstreams_routes(
            lambda conn: authenticate(conn.scope, authenticator), runtime.dispatcher, settings.max_body_bytes,
        )),
        # /v1/chat/completions, /v1/embeddings, /v1/models (served by the built-in llm server's engine)
        *edge.limit_routes(
            openai_routes(ctx, lambda request: authenticate(request.scope, authenticator), metrics=edge.metrics),
            render=openai_error_body,  # OpenAI SDKs read a 429 in their own error shape
        ),
    ]

    add_recorder_collector(edge.metrics, runtime.recorder)  # vsm_episodes{state} in /metrics
    app = _RouterApp(routes=routes, lifespan=lifespan)
    # Per-route request counters and latency; /mcp's fast lane bypasses Starlette's router, so it
    # is counted by a wrapper with a fixed route label.
    app.add_middleware(RouteMetrics, metrics=edge.metrics)
    app.hot_path = RouteMetrics(aggregate_endpoint, edge.metrics, route="/mcp")
    app.hot_max_body = settings.max_body_bytes
    app.state.ctx = ctx
    app.state.runtime = runtime
    app.state.dispatcher = runtime.dispatcher
    app.state.upstreams = runtime.upstreams
    app.state.catalog = runtime.catalog
    app.state.aggregate = aggregate
    app.state.router_fastpath = fast
    app.state.authenticator = authenticator
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
