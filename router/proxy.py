"""``/mcp/<server>``: one upstream, transparent — original names, the upstream's capabilities.

Server→client traffic — sampling, elicitation, roots requests, log messages, progress,
resource updates — is relayed to the downstream session that caused it, on the stream of its
request in flight when there is one. Two ways to know which session that is:

* **shared** (stdio upstreams, the default ``session_mode``): downstream sessions share the
  upstream's supervised pool — no process per client. A downstream request *leases* one pooled
  session for its duration (``Upstream.lease``): while it runs, that session serves no one else,
  so whatever the upstream asks or logs on it belongs to this request's client. Each session's
  ``logging/setLevel`` is kept here and applied to what is relayed (the shared session's own
  level is not touched). Pool size bounds how many downstream requests run at once.
* **per client** (HTTP and builtin upstreams, and stdio with ``session_mode: per_client``): each
  downstream session gets its own upstream session (session affinity, DESIGN.md "Upstreams"),
  opened on its first request, mirroring the downstream's declared capabilities, closed within a
  second of the downstream session's end (DELETE) or idle expiry.

Progress of a ``tools/call`` reaches the client through the call's progress callback only (the
SDK also tees it to the message handler; relaying both sent every step twice).

Every ``tools/call`` still runs through the Dispatcher pipeline (grants, validation, rate
limits, audit); only step 7 uses the affinity session. Other requests are forwarded as they
are, with the principal added to ``_meta``. Past ``MAX_AFFINITY`` per-client sessions per
upstream, new downstream sessions share the pooled session (server→client requests then cannot be
relayed).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import mcp.types as mt
from anyio.abc import TaskGroup
from mcp import Client
from mcp.server.lowlevel.server import Server
from mcp.server.models import InitializationOptions
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from starlette.types import Receive, Scope, Send

from router.aggregate import LEVELS, PrincipalOf, _progress_forwarder, to_mcp_error, trace_of
from router.fastlane.fastpath import checked_body, refuse_oversized, replaying
from router.gate.authn import send_error
from router.runtime import RouterRuntime
from router.upstreams.upstream import CONNECT_TIMEOUT_S, Upstream
from vsm_mcp.errors import InvalidArguments, NotFound, UpstreamUnavailable, VsmError

log = logging.getLogger(__name__)

MAX_AFFINITY = 64
IDLE_CLOSE_S = 600.0
REAP_EVERY_S = 1.0
_LOCAL = frozenset({"initialize", "ping"})


class _Affinity:
    """One downstream session's side of the proxy: its own upstream session (per-client mode), or
    the relay a leased pooled session hands server→client traffic to (shared mode)."""

    def __init__(self, conn: Any, session_id: str | None = None) -> None:
        self.conn_ref = weakref.ref(conn)
        self.session_id = session_id
        self.client: Client | None = None
        self.error: VsmError | None = None
        self.ready = anyio.Event()
        self.closed = anyio.Event()
        self.last_used = time.monotonic()
        self.active: list[Any] = []  # downstream request contexts in flight, newest last
        self.scope = anyio.CancelScope()
        self.level: int | None = None  # the session's logging/setLevel, applied here in shared mode
        self.raw_tokens: set[Any] = set()  # progressTokens of forwarded requests (not tools/call)

    # --- relaying server→client traffic to the downstream --------------------------------
    async def _downstream_request(self, request: Any, result_type: Any) -> Any:
        ctx = self.active[-1] if self.active else None
        try:
            if ctx is not None:
                return await ctx.session.send_request(
                    request, result_type, metadata=ServerMessageMetadata(related_request_id=ctx.request_id)
                )
            conn = self.conn_ref()
            if conn is None:
                return mt.ErrorData(code=mt.INTERNAL_ERROR, message="the downstream session is gone")
            data = request.model_dump(by_alias=True, mode="json", exclude_none=True)
            raw = await conn.send_raw_request(data["method"], data.get("params"))
            return result_type.model_validate(raw, by_name=False)
        except MCPError as exc:
            return exc.error

    async def sampling(self, _context: Any, params: mt.CreateMessageRequestParams) -> Any:
        return await self._downstream_request(mt.CreateMessageRequest(params=params), mt.CreateMessageResult)

    async def elicitation(self, _context: Any, params: Any) -> Any:
        return await self._downstream_request(mt.ElicitRequest(params=params), mt.ElicitResult)

    async def list_roots(self, _context: Any) -> Any:
        return await self._downstream_request(mt.ListRootsRequest(), mt.ListRootsResult)

    def wanted(self, message: Any) -> bool:
        """Whether a notification from the upstream should be relayed to this session."""
        root = getattr(message, "root", message)
        method = getattr(root, "method", "")
        params = getattr(root, "params", None)
        if method == "notifications/progress":
            # A tools/call's progress comes through its progress callback; only forwarded
            # requests' progress (the client's own token) needs relaying from here.
            return getattr(params, "progress_token", None) in self.raw_tokens
        if method == "notifications/message" and self.level is not None:
            return LEVELS.get(str(getattr(params, "level", "")), len(LEVELS)) >= self.level
        return True

    async def on_message(self, message: Any) -> None:
        if isinstance(message, Exception) or not self.wanted(message):
            return
        ctx = self.active[-1] if self.active else None
        try:
            if ctx is not None:
                await ctx.session.send_notification(message, related_request_id=ctx.request_id)
            elif (conn := self.conn_ref()) is not None:
                data = message.model_dump(by_alias=True, mode="json", exclude_none=True)
                await conn.notify(data["method"], data.get("params"))
        except Exception as exc:  # the downstream went away; nothing to relay to
            log.debug("relaying %s failed: %s", type(message).__name__, exc)

    def callbacks(self, caps: mt.ClientCapabilities | None) -> dict[str, Any]:
        cb: dict[str, Any] = {"message_handler": self.on_message}
        if caps is not None:
            if caps.sampling is not None:
                cb["sampling_callback"] = self.sampling
                cb["sampling_capabilities"] = caps.sampling
            if caps.elicitation is not None:
                cb["elicitation_callback"] = self.elicitation
            if caps.roots is not None:
                cb["list_roots_callback"] = self.list_roots
        return cb


class _ProxyServer(Server[Any]):
    """A lowlevel server whose initialize result mirrors the upstream's."""

    def __init__(self, upstream: Upstream) -> None:
        super().__init__(upstream.name)
        self.upstream = upstream

    def create_initialization_options(self, *args: Any, **kwargs: Any) -> InitializationOptions:
        up = self.upstream
        info = up.server_info
        caps = up.capabilities or mt.ServerCapabilities(tools=mt.ToolsCapability())
        return InitializationOptions(
            server_name=info.name if info else up.name,
            server_version=info.version if info else "",
            title=info.title if info else None,
            capabilities=caps,
            instructions=up.instructions,
        )


class ServerProxy:
    """The transparent endpoint of one upstream; see the module docstring."""

    def __init__(self, runtime: RouterRuntime, upstream: Upstream, principal_of: PrincipalOf, max_body_bytes: int):
        self.runtime = runtime
        self.upstream = upstream
        self.principal_of = principal_of
        self.server = _ProxyServer(upstream)
        self.server.middleware.append(self._middleware)
        self.manager = StreamableHTTPSessionManager(
            app=self.server, max_request_body_size=max_body_bytes, session_idle_timeout=IDLE_CLOSE_S
        )
        self._affinity: dict[int, _Affinity] = {}
        self._tg: TaskGroup | None = None
        spec = upstream.spec
        self.shared = spec.kind == "stdio" and spec.session_mode == "shared"

    # --- session affinity ----------------------------------------------------------------
    async def _affinity_for(self, ctx: Any) -> _Affinity | None:
        conn = getattr(ctx.session, "_connection", None)
        if conn is None or self._tg is None:
            return None
        aff = self._affinity.get(id(conn))
        if aff is not None and aff.conn_ref() is not conn:
            aff.closed.set()
            aff = None
        if self.shared:  # a relay only: the upstream session is leased from the pool per request
            if aff is None:
                aff = self._affinity[id(conn)] = _Affinity(conn, _session_id(ctx))
                aff.ready.set()
            aff.last_used = time.monotonic()
            return aff
        if aff is None:
            if len(self._affinity) >= MAX_AFFINITY:
                return None
            aff = self._affinity[id(conn)] = _Affinity(conn, _session_id(ctx))
            self._tg.start_soon(self._hold, aff, ctx.session.client_capabilities)
        with anyio.move_on_after(CONNECT_TIMEOUT_S):
            await aff.ready.wait()
        if not aff.ready.is_set():
            aff.scope.cancel()
            aff.error = UpstreamUnavailable(f"upstream {self.upstream.name!r} did not accept a session in time")
        if aff.error is not None:
            self._affinity.pop(id(conn), None)
            raise to_mcp_error(aff.error)
        aff.last_used = time.monotonic()
        return aff

    async def _hold(self, aff: _Affinity, caps: mt.ClientCapabilities | None) -> None:
        try:
            with aff.scope:
                async with self.upstream.open_client(**aff.callbacks(caps)) as client:
                    aff.client = client
                    aff.ready.set()
                    await aff.closed.wait()
        except VsmError as exc:
            aff.error = exc
        except Exception as exc:
            aff.error = UpstreamUnavailable(f"upstream {self.upstream.name!r}: {type(exc).__name__}: {exc}")
        finally:
            aff.client = None
            aff.ready.set()

    async def reap(self) -> None:
        """Close affinity sessions whose downstream session is gone (DELETE, idle expiry) or idle."""
        now = time.monotonic()
        live = self.manager._server_instances  # noqa: SLF001 - the SDK's session table
        for key, aff in list(self._affinity.items()):
            gone = aff.conn_ref() is None or aff.closed.is_set()
            ended = aff.session_id is not None and (
                aff.session_id not in live or getattr(live[aff.session_id], "is_terminated", False)
            )
            if gone or ended or (not aff.active and now - aff.last_used > IDLE_CLOSE_S):
                aff.closed.set()
                self._affinity.pop(key, None)

    def end_session(self, session_id: str) -> None:
        """The downstream session ended (DELETE): close its upstream session now."""
        for key, aff in list(self._affinity.items()):
            if aff.session_id == session_id:
                aff.closed.set()
                self._affinity.pop(key, None)

    @asynccontextmanager
    async def _upstream_session(self, aff: _Affinity | None) -> AsyncIterator[Client | None]:
        """The session a downstream request runs on: a leased pooled one (shared mode), the
        downstream session's own (per-client mode), or None (the pool, no relaying)."""
        if self.shared and aff is not None:
            async with self.upstream.lease(aff) as client:
                yield client
        else:
            yield aff.client if aff is not None else None

    def close_all(self) -> None:
        for aff in self._affinity.values():
            aff.closed.set()
        self._affinity.clear()

    # --- request handling ----------------------------------------------------------------
    async def _middleware(self, ctx: Any, call_next: Any) -> Any:
        method = ctx.method
        if ctx.request_id is None:
            if method == "notifications/roots/list_changed":
                aff = self._affinity.get(id(getattr(ctx.session, "_connection", None)))
                if self.shared:
                    for live in self.upstream.live_clients():
                        await live.session.send_roots_list_changed()
                elif aff is not None and aff.client is not None:
                    await aff.client.session.send_roots_list_changed()
            return await call_next(ctx)
        if method in _LOCAL:
            return await call_next(ctx)
        try:
            principal = await self.principal_of(ctx)
        except VsmError as exc:
            raise to_mcp_error(exc) from None
        aff = await self._affinity_for(ctx)
        if aff is not None and method == "logging/setLevel":
            return await self._set_level(aff, ctx.params or {})
        if aff is not None:
            aff.active.append(ctx)
        token = None
        try:
            async with self._upstream_session(aff) as client:
                if method == "tools/call":
                    return await self._call_tool(ctx, principal, client)
                params = dict(ctx.params or {})
                params["_meta"] = {**(params.get("_meta") or {}), **self.runtime.dispatcher.meta_for(principal)}
                token = params["_meta"].get("progressToken")
                if token is not None and aff is not None:
                    aff.raw_tokens.add(token)
                return await self.upstream.request(method, params, client=client)
        except VsmError as exc:
            raise to_mcp_error(exc) from None
        finally:
            if aff is not None:
                aff.active.remove(ctx)
                aff.raw_tokens.discard(token)
                aff.last_used = time.monotonic()

    async def _set_level(self, aff: _Affinity, params: dict[str, Any]) -> dict[str, Any]:
        """The session's log level is applied here, to what is relayed to it: a shared session's
        level is not this client's to set, and an upstream without the logging capability would
        refuse the request. An own session of an upstream that has logging is told as well."""
        level = params.get("level")
        if level not in LEVELS:
            raise to_mcp_error(InvalidArguments(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}"))
        aff.level = LEVELS[level]
        caps = self.upstream.capabilities
        if not self.shared and aff.client is not None and caps is not None and caps.logging is not None:
            try:
                await self.upstream.request("logging/setLevel", {"level": level}, client=aff.client)
            except VsmError as exc:
                log.debug("upstream %s refused logging/setLevel: %s", self.upstream.name, exc)
        return {}

    async def _call_tool(self, ctx: Any, principal: Any, client: Client | None) -> mt.CallToolResult:
        params = ctx.params or {}
        name, arguments = params.get("name"), params.get("arguments")
        if not isinstance(name, str):
            raise InvalidArguments("tools/call needs params.name (a string)")
        catalog = self.runtime.catalog
        entry = catalog.find(self.upstream.name, name)
        if entry is None:
            await self.upstream.refresh()
            entry = catalog.find(self.upstream.name, name)
        if entry is None:
            raise NotFound(f"unknown tool {name!r} on {self.upstream.name!r}", data={"tool": name})
        up = self.upstream

        async def via(tool: str, args: dict[str, Any], meta: dict[str, Any], progress: Any) -> mt.CallToolResult:
            return await up.call_tool(tool, args, meta=meta, progress=progress, client=client)

        return await self.runtime.dispatcher.call_tool(
            principal, entry.public_name, arguments, source="mcp-server", progress=_progress_forwarder(ctx), via=via,
            trace=trace_of(ctx),
        )


def _session_id(ctx: Any) -> str | None:
    request = getattr(ctx, "request", None)
    headers = getattr(request, "headers", None)
    sid = headers.get("mcp-session-id") if headers is not None else None
    return str(sid) if sid else None


class ProxySet:
    """All ``/mcp/<server>`` endpoints."""

    def __init__(self, runtime: RouterRuntime, principal_of: PrincipalOf, *, max_body_bytes: int) -> None:
        self.runtime = runtime
        self.max_body_bytes = max_body_bytes
        self.principal_of = principal_of
        self.proxies = {
            name: ServerProxy(runtime, up, principal_of, max_body_bytes) for name, up in runtime.upstreams.items()
        }
        self._stack: AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._lock = anyio.Lock()
        self._scopes: dict[str, anyio.CancelScope] = {}  # endpoints started after start-up, by name

    async def _proxy_for(self, name: str) -> ServerProxy | None:
        """The endpoint of upstream ``name`` as the runtime has it now (issue 27: upstreams come and
        go while the router runs); a tenant's own upstream (``name@tenant``) has none."""
        up = self.runtime.upstreams.get(name)
        proxy = self.proxies.get(name)
        if up is None or "@" in name:
            return None
        if proxy is not None and proxy.upstream is up:
            return proxy
        if self._stack is None:
            return proxy
        async with self._lock:
            proxy = self.proxies.get(name)
            if proxy is not None and proxy.upstream is up:
                return proxy
            if proxy is not None:
                proxy.close_all()
                old = self._scopes.pop(name, None)
                if old is not None:  # the replaced upstream's endpoint stops serving
                    old.cancel()
            proxy = ServerProxy(self.runtime, up, self.principal_of, self.max_body_bytes)
            proxy._tg = self._tg
            assert self._tg is not None
            self._scopes[name] = await self._tg.start(self._serve_manager, proxy)  # run() exits in the task it entered
            self.proxies[name] = proxy
            return proxy

    @staticmethod
    async def _serve_manager(proxy: ServerProxy, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.CancelScope() as scope:
            async with proxy.manager.run():
                task_status.started(scope)
                await anyio.sleep_forever()  # until replaced, or the app's task group is cancelled at shutdown

    async def start(self, stack: AsyncExitStack, tg: TaskGroup) -> None:
        self._stack, self._tg = stack, tg
        for p in self.proxies.values():
            p._tg = tg
            await stack.enter_async_context(p.manager.run())
        tg.start_soon(self._reaper)

    async def _reaper(self) -> None:
        # Every second: a per-client process stops within a second or two of its session's end.
        while True:
            await anyio.sleep(REAP_EVERY_S)
            for p in self.proxies.values():
                await p.reap()

    async def aclose(self) -> None:
        for p in self.proxies.values():
            p.close_all()

    async def on_upstream_notification(self, server: str, notification: Any) -> None:
        """Pooled-session notifications are not tied to a downstream session; nothing to relay."""
        return None

    async def handle(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and await refuse_oversized(scope, send, self.max_body_bytes):
            return
        proxy = await self._proxy_for(name)
        if proxy is None:
            await send_error(send, NotFound(f"no upstream named {name!r}"), jsonrpc=True)
            return
        if proxy.upstream.state in ("disabled", "failed"):
            up = proxy.upstream
            await send_error(send, UpstreamUnavailable(f"upstream {name!r} is {up.state}: {up.last_error}"), jsonrpc=True)
            return
        if scope["type"] == "http" and scope["method"] == "POST":
            body = await checked_body(receive, send, self.max_body_bytes)
            if body is None:  # answered (413, malformed envelope) or the client left
                return
            receive = replaying(body, receive)
        await proxy.manager.handle_request(scope, receive, send)
        if scope["type"] == "http" and scope["method"] == "DELETE":
            sid = dict(scope.get("headers", ())).get(b"mcp-session-id")
            if sid:
                proxy.end_session(sid.decode("latin-1"))
