"""Upstream sessions: one persistent, supervised MCP client session per upstream (N for stdio pools).

The interface the rest of the router uses is small::

    up = Upstream(spec, ctx, catalog)
    await up.start(task_group)          # supervisor tasks: connect, list, watch, reconnect with backoff
    await up.wait_ready(timeout)        # bounded; a slow upstream never blocks start-up
    result = await up.call_tool(name, args, meta=…, progress=…)   # over the pooled session
    raw = await up.request(method, params)                        # any other request, as dicts
    async with up.open_client(**callbacks) as client: …           # a dedicated session (affinity)
    await up.aclose()                   # stdio: the process group is killed

Transports: ``builtin`` → the server built in-process from ``target`` (``mcp.Client(server)``,
no socket); ``stdio`` → router/upstreams/stdio.py; ``http`` → streamable HTTP, falling back to SSE.
A session is initialised once and reused for every call. When it dies (process exit, closed
connection, failed health ping) its tools are marked unavailable in the catalog, calls get
``UpstreamUnavailable`` and the supervisor reconnects with exponential backoff.

Foreign exceptions (MCPError, anyio, httpx, pydantic) are mapped to ``vsm_mcp.errors`` here.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Literal, overload

import anyio
import mcp.types as mt
from anyio.abc import TaskGroup
from mcp import Client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from router.registry.catalog import Catalog
from router.upstreams.http_session import RawHttpSession
from router.upstreams.manifest import UpstreamSpec
from router.upstreams.stdio import StdioTransport, kill_group
from router.upstreams.zombie import watch_liveness
from vsm_mcp.bus.events import Event
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import (
    InvalidArguments,
    NotFound,
    UpstreamTimeout,
    UpstreamUnavailable,
    VsmError,
)
from vsm_mcp.resilience import CircuitBreaker

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]
LogFn = Callable[[str, Any, str | None], Awaitable[None]]
LEASE_POLL_S = 0.005
CONNECT_TIMEOUT_S = 20.0
HEALTH_INTERVAL_S = 15.0
BACKOFF_START_S, BACKOFF_MAX_S = 0.25, 30.0


class UpstreamProtocolError(VsmError):
    """A JSON-RPC error the upstream itself returned; keeps the upstream's code."""

    label = "upstream_error"

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message, data={"upstream_data": data} if data is not None else None)
        self.code = code  # type: ignore[misc]


def map_error(exc: BaseException, server: str) -> VsmError:
    """Map a foreign exception from an upstream call to the error taxonomy."""
    if isinstance(exc, VsmError):
        return exc
    if isinstance(exc, MCPError):
        if exc.code == mt.CONNECTION_CLOSED:
            return UpstreamUnavailable(f"upstream {server!r} closed the connection", data={"server": server})
        if exc.code == mt.REQUEST_TIMEOUT:
            return UpstreamTimeout(f"upstream {server!r} timed out: {exc.message}", data={"server": server})
        if exc.code == mt.INVALID_PARAMS:
            return InvalidArguments(f"upstream {server!r} rejected the arguments: {exc.message}")
        if exc.code == mt.METHOD_NOT_FOUND:
            return NotFound(f"upstream {server!r}: {exc.message}")
        return UpstreamProtocolError(exc.code, f"upstream {server!r}: {exc.message}", exc.data)
    if isinstance(exc, ValidationError):
        return UpstreamProtocolError(mt.INTERNAL_ERROR, f"upstream {server!r} sent an invalid result")
    return UpstreamUnavailable(
        f"upstream {server!r} is unreachable: {type(exc).__name__}: {exc}".rstrip(": "), data={"server": server}
    )


def leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def describe(exc: BaseException) -> str:
    exc = leaf(exc)
    if isinstance(exc, TimeoutError):
        return "timed out while connecting"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def _is_connection_loss(exc: BaseException) -> bool:
    if isinstance(exc, MCPError):
        return exc.code == mt.CONNECTION_CLOSED
    return isinstance(exc, anyio.BrokenResourceError | anyio.ClosedResourceError | ConnectionError | OSError)


class _Conn:
    """One pooled session and the task that keeps it alive."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.client: Client | None = None
        self.dead = anyio.Event()
        self.busy = 0
        self.pid: int | None = None
        # Shared stdio pools (router/proxy.py): the downstream request that leased this session;
        # server→client requests and notifications on it are relayed to that request's client.
        self.relay: Any = None
        self.listeners: list[LogFn] = []  # log relays of the calls in flight here (aggregate /mcp)
        self.draining = False  # a zombie: takes no new calls, killed after the grace period


class Upstream:
    """A supervised upstream; see the module docstring."""

    def __init__(
        self,
        spec: UpstreamSpec,
        ctx: ServerContext,
        catalog: Catalog,
        *,
        on_notification: Callable[[str, Any], Awaitable[None]] | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.ctx = ctx
        self.catalog = catalog
        self.on_notification = on_notification
        self.breaker = CircuitBreaker(spec.name)
        self.state = "disabled" if not spec.enabled else "starting"
        self.last_error = ""
        self.connected_at: float | None = None
        self.restarts = 0
        self.zombies = 0
        self.capabilities: mt.ServerCapabilities | None = None
        self.server_info: mt.Implementation | None = None
        self.instructions: str | None = None
        self._conns = [_Conn(i) for i in range(spec.pool_size if spec.kind == "stdio" else 1)]
        self._ready = anyio.Event()
        self._closing = False
        self._close_evt = anyio.Event()
        self._server_obj: Any = None
        self._rr = itertools.count()
        self._cancel: anyio.CancelScope | None = None
        self._refreshing = False
        self._raw: RawHttpSession | None = None
        self._running = 0
        self.inflight = 0  # tool calls in progress: a removed upstream is drained until 0 (router/runtime.py)
        self.stopped = anyio.Event()
        self.stopped.set()  # nothing runs until start()

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self, tg: TaskGroup) -> None:
        self._tg = tg
        if not self.spec.enabled:
            return
        if self.spec.kind == "builtin":
            try:
                self._server_obj = self._build_builtin()
            except Exception as exc:  # an import error of one builtin must not kill the router
                self.state, self.last_error = "failed", f"cannot build {self.spec.target}: {type(exc).__name__}: {exc}"
                log.error("upstream %s: %s", self.name, self.last_error)
                self._ready.set()
                return
        self._running = len(self._conns)
        self.stopped = anyio.Event()
        for conn in self._conns:
            tg.start_soon(self._supervise, conn)

    def _build_builtin(self) -> Any:
        module_name, _, attr = self.spec.target.partition(":")
        build = getattr(importlib.import_module(module_name), attr)
        return build(self.ctx)

    async def wait_ready(self, timeout: float) -> bool:
        with anyio.move_on_after(timeout):
            await self._ready.wait()
        return self.state == "ready"

    async def aclose(self) -> None:
        self._closing = True
        self._close_evt.set()
        for conn in self._conns:
            conn.dead.set()

    @property
    def connected(self) -> bool:
        return any(c.client is not None for c in self._conns)

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self._conns if c.pid is not None and c.client is not None]

    def status(self) -> dict[str, Any]:
        return {
            "kind": self.spec.kind,
            "state": self.state,
            "ok": self.state == "ready" or self.state == "disabled",
            "required": self.spec.required,
            "error": self.last_error,
            "tools": len(self.catalog.server_tools(self.name)),
            "sessions": sum(1 for c in self._conns if c.client is not None),
            "restarts": self.restarts,
            "circuit": self.breaker.state,
            "draining": sum(1 for c in self._conns if c.draining),
            "zombies": self.zombies,
        }

    # --- transports ----------------------------------------------------------------------
    def _transport(self) -> Any:
        spec = self.spec
        if spec.kind == "builtin":
            return self._server_obj
        if spec.kind == "stdio":
            return StdioTransport(spec.command, list(spec.args), spec.process_env(), spec.cwd, spec.name)
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        return streamable_http_client(spec.url, http_client=create_mcp_http_client(headers=spec.http_headers()))

    def _sse_transport(self) -> Any:
        from mcp.client.sse import sse_client

        return sse_client(self.spec.url, headers=self.spec.http_headers())

    def make_client(self, transport: Any = None, **callbacks: Any) -> Client:
        """An un-entered Client for this upstream (a new transport unless one is given)."""
        # Handshake (legacy) era for every kind: in the 2026-07-28 era a server announces
        # list_changed only on subscriptions/listen streams, so an in-process builtin's
        # notifications never reached the catalog.
        mode = "legacy"
        return Client(
            transport if transport is not None else self._transport(),
            mode=mode,
            cache=None,
            client_info=mt.Implementation(name="vsm-mcp-router", version="0.1.0"),
            **callbacks,
        )

    async def _enter(self, stack: AsyncExitStack, conn: _Conn | None, **callbacks: Any) -> Client:
        # No cancel scope around entering: the client's task groups outlive this call. Callers
        # bound the wait from outside (the session holder task is cancelled on timeout).
        transport = self._transport()
        try:
            client = await stack.enter_async_context(self.make_client(transport, **callbacks))
        except Exception:
            if self.spec.kind != "http":
                raise
            # Old servers speak only the legacy HTTP+SSE transport.
            client = await stack.enter_async_context(self.make_client(self._sse_transport(), **callbacks))
        if conn is not None and isinstance(transport, StdioTransport):
            conn.pid = transport.pid
            dead = conn.dead  # this session's event: a later session gets a fresh one

            async def watch_exit() -> None:
                await transport.exited.wait()
                dead.set()

            self._tg.start_soon(watch_exit)
        return client

    @asynccontextmanager
    async def open_client(self, **callbacks: Any) -> AsyncIterator[Client]:
        """A dedicated session with its own callbacks (session affinity); closed on exit."""
        if self.state in ("disabled", "failed"):
            raise UpstreamUnavailable(f"upstream {self.name!r} is {self.state}: {self.last_error}")
        async with AsyncExitStack() as stack:
            try:
                client = await self._enter(stack, None, **callbacks)
            except Exception as exc:
                raise map_error(exc, self.name) from exc
            yield client

    # --- supervision ---------------------------------------------------------------------
    async def _supervise(self, conn: _Conn) -> None:
        try:
            await self._supervise_loop(conn)
        finally:
            self._running -= 1
            if self._running <= 0:
                self.stopped.set()

    async def _supervise_loop(self, conn: _Conn) -> None:
        backoff = BACKOFF_START_S
        while not self._closing:
            started = time.monotonic()
            try:
                await self._session_once(conn)
            except Exception as exc:
                self.last_error = describe(exc)
                log.warning("upstream %s (session %d): %s", self.name, conn.index, self.last_error)
                log.debug("upstream %s failure", self.name, exc_info=exc)
            finally:
                conn.client = None
                conn.pid = None
                conn.draining = False
            if self._closing:
                break
            self.restarts += 1
            if not any(c.client for c in self._conns):
                self.state = "unavailable"
                self.catalog.set_available(self.name, False)
                self._ready.set()  # start-up stops waiting: it is down, not pending
            if time.monotonic() - started > 60:
                backoff = BACKOFF_START_S
            with anyio.move_on_after(backoff):
                await self._close_evt.wait()
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _session_once(self, conn: _Conn) -> None:
        """Open one session, load the lists, serve until it dies."""
        conn.dead = anyio.Event()
        opened = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._hold, conn, opened)
            with anyio.move_on_after(CONNECT_TIMEOUT_S):
                await opened.wait()
            if conn.client is None:
                tg.cancel_scope.cancel()
                raise TimeoutError("connect")
            try:
                if conn.index == 0 or self.state != "ready":
                    await self._load_lists(conn.client)
                if self.spec.kind == "http":
                    await self._open_raw()
                self._mark_ready()
                await self._watch(conn)
            finally:
                conn.dead.set()
                raw, self._raw = self._raw, None
                if raw is not None:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(3):
                        await raw.aclose()

    async def _open_raw(self) -> None:
        """The lean tools/call session next to the SDK one (router/upstreams/http_session.py); optional."""
        raw = RawHttpSession(self.name, self.spec.url, self.spec.http_headers(), self.spec.timeout)
        try:
            with anyio.fail_after(CONNECT_TIMEOUT_S):
                await raw.open()
        except Exception as exc:  # e.g. an SSE-only server: calls use the SDK session
            log.info("upstream %s: no fast call session (%s); using the SDK session", self.name, describe(exc))
            await raw.aclose()
            return
        self._raw = raw

    def _pool_callbacks(self, conn: _Conn) -> dict[str, Any]:
        """Callbacks of a pooled session. A stdio pool is shared by ``/mcp/<server>`` clients, so
        it declares sampling, elicitation and roots, and hands each such request to the client
        whose request leased the session (``lease``); with no leaseholder it answers an error."""

        async def on_message(message: Any) -> None:
            await self._message_handler(message)
            await self._relay_message(conn, message)

        callbacks: dict[str, Any] = {"message_handler": on_message}
        if self.spec.kind != "stdio":
            return callbacks

        def no_client(what: str) -> mt.ErrorData:
            return mt.ErrorData(
                code=mt.INVALID_REQUEST,
                message=f"no client is waiting for this {what}: upstream {self.name!r} asked outside a request "
                f"of an /mcp/{self.name} session",
            )

        async def sampling(context: Any, params: Any) -> Any:
            relay = conn.relay
            return await relay.sampling(context, params) if relay is not None else no_client("sampling request")

        async def elicitation(context: Any, params: Any) -> Any:
            relay = conn.relay
            return await relay.elicitation(context, params) if relay is not None else no_client("elicitation")

        async def list_roots(context: Any) -> Any:
            relay = conn.relay
            return await relay.list_roots(context) if relay is not None else no_client("roots request")

        callbacks.update(
            sampling_callback=sampling, sampling_capabilities=mt.SamplingCapability(),
            elicitation_callback=elicitation, list_roots_callback=list_roots,
        )
        return callbacks

    async def _relay_message(self, conn: _Conn, message: Any) -> None:
        """A notification on a pooled session: to the leaseholder, or a log message to the one
        call in flight on it (with several in flight it cannot be attributed: not relayed)."""
        if isinstance(message, Exception):
            return
        if conn.relay is not None:
            await conn.relay.on_message(message)
            return
        root = getattr(message, "root", message)
        if getattr(root, "method", "") == "notifications/message" and conn.busy == 1 and len(conn.listeners) == 1:
            p = root.params
            try:
                await conn.listeners[0](str(p.level), p.data, p.logger)
            except Exception as exc:  # the client went away; nothing to relay to
                log.debug("upstream %s: log relay failed: %s", self.name, exc)

    def live_clients(self) -> list[Client]:
        return [c.client for c in self._conns if c.client is not None and not c.dead.is_set()]

    @asynccontextmanager
    async def lease(self, relay: Any) -> AsyncIterator[Client]:
        """One pooled session for the caller alone while the block runs: no other call is put on
        it, and what the upstream asks or logs on it goes to ``relay`` (router/proxy.py).
        Waits (up to the manifest timeout) for a session with nothing in flight."""
        deadline = anyio.current_time() + self.spec.timeout
        while True:
            conn = next((c for c in self._conns if c.client is not None and not c.dead.is_set()
                         and c.relay is None and c.busy == 0 and not c.draining), None)
            if conn is not None:
                break
            if not self.live_clients():
                raise self._unavailable()
            if anyio.current_time() > deadline:
                raise UpstreamTimeout(
                    f"every session of upstream {self.name!r} stayed busy for {self.spec.timeout:g}s "
                    f"(pool_size {len(self._conns)}: raise it for more concurrent clients)",
                    data={"server": self.name},
                )
            await anyio.sleep(LEASE_POLL_S)
        conn.relay = relay
        client = conn.client
        assert client is not None
        try:
            yield client
        finally:
            if conn.relay is relay:
                conn.relay = None

    async def _unleased_client(self) -> Client | None:
        """A pooled session nobody has leased, waiting for one while all are (bounded)."""
        deadline = anyio.current_time() + self.spec.timeout
        while anyio.current_time() < deadline:
            client = self._pick_client()
            if client is not None or not self.live_clients():
                return client
            await anyio.sleep(LEASE_POLL_S)
        return None

    async def _hold(self, conn: _Conn, opened: anyio.Event) -> None:
        async with AsyncExitStack() as stack:
            conn.client = await self._enter(stack, conn, **self._pool_callbacks(conn))
            opened.set()
            await conn.dead.wait()
            conn.client = None

    async def _watch(self, conn: _Conn) -> None:
        """Return when the session is dead: process exit, closed stream, or a failed health ping
        — or, for stdio, after draining a stuck child (router/upstreams/zombie.py)."""
        if self.spec.kind == "stdio" and conn.client is not None:
            bound = self.spec.zombie_s or self.ctx.settings.upstream_zombie_s
            verdict = await watch_liveness(conn.dead, conn.client.session.send_ping, bound)
            if verdict.kind == "zombie":
                await self._drain(conn, verdict.reason)
            elif verdict.reason != "session closed":
                self.last_error = verdict.reason
            return
        while not conn.dead.is_set():
            with anyio.move_on_after(HEALTH_INTERVAL_S):
                await conn.dead.wait()
            if conn.dead.is_set() or self.spec.kind == "builtin" or conn.busy:
                continue
            try:
                with anyio.fail_after(10):
                    await conn.client.session.send_ping()  # type: ignore[union-attr]
            except Exception as exc:
                self.last_error = f"health ping failed: {type(exc).__name__}: {exc}"
                return

    async def _drain(self, conn: _Conn, reason: str) -> None:
        """A stuck child: no new calls, in-flight calls get the grace period, then its group is killed."""
        conn.draining = True
        self.zombies += 1
        pid = conn.pid
        self.last_error = f"zombie (pid {pid}): {reason}"
        log.warning("upstream %s: session %d (pid %s) is a zombie: %s; draining", self.name, conn.index, pid, reason)
        await self._alert_zombie(pid, reason)
        grace = self.ctx.settings.upstream_drain_grace_s
        for _ in range(int(grace / 0.05)):
            if conn.busy == 0 or conn.dead.is_set():
                break
            await anyio.sleep(0.05)
        if pid is not None:
            kill_group(pid, signal.SIGKILL)  # a stopped or wedged child ignores anything gentler

    async def _alert_zombie(self, pid: int | None, reason: str) -> None:
        try:
            tenant = await self.ctx.default_tenant_id()  # an upstream serves every tenant: the operator's
            await self.ctx.bus.publish(Event(
                topic=f"alert.{tenant}.zombie", tenant=tenant, type="alert",
                data={"kind": "stdio", "upstream": self.name, "pid": pid, "reason": reason, "action": "drain"},
            ))
        except Exception:  # the alert is best effort; the drain goes on
            log.warning("upstream %s: could not publish the zombie alert", self.name, exc_info=True)

    def _mark_ready(self) -> None:
        self.state, self.last_error = "ready", ""
        self.connected_at = time.monotonic()
        self.breaker.reset()
        self.catalog.set_available(self.name, True)
        self._ready.set()

    async def _load_lists(self, client: Client) -> None:
        caps = client.server_capabilities
        self.capabilities, self.server_info, self.instructions = caps, client.server_info, client.instructions
        tools: list[mt.Tool] = []
        prompts: list[mt.Prompt] = []
        resources: list[mt.Resource] = []
        templates: list[mt.ResourceTemplate] = []
        with anyio.fail_after(max(self.spec.timeout, 10)):
            if caps.tools is not None:
                tools = await _all_pages(client.session.list_tools, "tools")
            if caps.prompts is not None:
                prompts = await _all_pages(client.session.list_prompts, "prompts")
            if caps.resources is not None:
                resources = await _all_pages(client.session.list_resources, "resources")
                templates = await _all_pages(client.session.list_resource_templates, "resource_templates")
        self.catalog.set_server(
            self.name,
            tools=tools,
            prompts=prompts,
            resources=resources,
            templates=templates,
            tags={t.name: self.spec.tags_for(t.name) for t in tools},
            cacheable=dict(self.spec.cacheable),
            available=True,
        )

    async def refresh(self) -> None:
        """Reload the lists (after a list_changed notification)."""
        client = self._pick_client() or next(iter(self.live_clients()), None)  # a list request may share a lease
        if client is None or self._refreshing:
            return
        self._refreshing = True
        try:
            await self._load_lists(client)
        except Exception as exc:
            log.warning("upstream %s: refreshing lists failed: %s", self.name, exc)
        finally:
            self._refreshing = False

    async def _message_handler(self, message: Any) -> None:
        if isinstance(message, Exception):
            log.debug("upstream %s: transport error: %s", self.name, message)
            return
        root = getattr(message, "root", message)
        method = getattr(root, "method", "")
        if method in (
            "notifications/tools/list_changed",
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
        ):
            self._tg.start_soon(self.refresh)
        if self.on_notification is not None and method:
            await self.on_notification(self.name, root)

    # --- calls ---------------------------------------------------------------------------
    def _pick_client(self) -> Client | None:
        """A live pooled session nobody has leased (None when there is none right now)."""
        live = [c for c in self._conns
                if c.client is not None and not c.dead.is_set() and c.relay is None and not c.draining]
        if not live:
            return None
        if len(live) == 1:
            return live[0].client
        start = next(self._rr)
        return min((live[(start + i) % len(live)] for i in range(len(live))), key=lambda c: c.busy).client

    def _conn_of(self, client: Client) -> _Conn | None:
        for c in self._conns:
            if c.client is client:
                return c
        return None

    def _unavailable(self) -> UpstreamUnavailable:
        detail = f": {self.last_error}" if self.last_error else ""
        return UpstreamUnavailable(
            f"upstream {self.name!r} is {self.state}{detail}", data={"server": self.name, "state": self.state}
        )

    @overload
    async def call_tool(
        self, tool: str, arguments: dict[str, Any], *, meta: dict[str, Any] | None = None,
        progress: ProgressFn | None = None, client: Client | None = None, as_json: Literal[False] = False,
        notify: LogFn | None = None,
    ) -> mt.CallToolResult: ...

    @overload
    async def call_tool(
        self, tool: str, arguments: dict[str, Any], *, meta: dict[str, Any] | None = None,
        progress: ProgressFn | None = None, client: Client | None = None, as_json: Literal[True],
        notify: LogFn | None = None,
    ) -> mt.CallToolResult | dict[str, Any]: ...

    async def call_tool(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        meta: dict[str, Any] | None = None,
        progress: ProgressFn | None = None,
        client: Client | None = None,
        as_json: bool = False,
        notify: LogFn | None = None,
    ) -> mt.CallToolResult | dict[str, Any]:
        """Call ``tool`` with the manifest timeout and the circuit breaker, over the pooled
        session or the given dedicated ``client``: a ``CallToolResult``, or with ``as_json`` the
        result's JSON object as the upstream sent it where the session has it (the raw HTTP
        lane; other sessions still give a ``CallToolResult``). ``notify(level, data, logger)``
        receives the upstream's log messages about this call, where they can be told apart."""
        raw = self._raw if client is None else None
        if raw is None:
            client = client or self._pick_client() or await self._unleased_client()
            if client is None:
                raise self._unavailable()
        self.breaker.before_call()
        self.inflight += 1
        conn = self._conn_of(client) if client is not None else None
        if conn is not None:
            conn.busy += 1
            if notify is not None:
                conn.listeners.append(notify)
        timed_out = False
        try:
            if raw is not None:
                # The raw lane is asyncio streams anyway; asyncio.timeout costs a fraction of an
                # anyio cancel scope (task lookups, sniffio) on the hottest path of the router.
                deadline = asyncio.timeout(self.spec.timeout)
                try:
                    async with deadline:
                        result = await raw.call_tool(tool, arguments, meta, progress, as_json=as_json, notify=notify)
                except TimeoutError:
                    if not deadline.expired():
                        raise
                    timed_out = True
            else:
                assert client is not None
                with anyio.move_on_after(self.spec.timeout) as scope:
                    result = await client.session.call_tool(tool, arguments, progress_callback=progress, meta=meta)  # type: ignore[arg-type]
                timed_out = scope.cancelled_caught
        except Exception as exc:
            self.breaker.record_failure()
            if _is_connection_loss(exc) and conn is not None:
                conn.dead.set()
            if raw is not None and isinstance(exc, UpstreamUnavailable):
                self._conns[0].dead.set()  # reconnect both sessions: the server is likely gone
            raise map_error(exc, self.name) from exc
        finally:
            self.inflight -= 1
            if conn is not None:
                conn.busy -= 1
                if notify is not None:
                    conn.listeners.remove(notify)
        if timed_out:
            self.breaker.record_failure()
            raise UpstreamTimeout(
                f"upstream {self.name!r} did not answer {tool!r} within {self.spec.timeout:g}s",
                data={"server": self.name, "timeout_s": self.spec.timeout},
            )
        self.breaker.record_success()
        if not isinstance(result, mt.CallToolResult) and not (as_json and isinstance(result, dict)):
            raise UpstreamProtocolError(mt.INTERNAL_ERROR, f"upstream {self.name!r} returned an unexpected result")
        return result

    async def request(self, method: str, params: dict[str, Any] | None, *, client: Client | None = None) -> dict[str, Any]:
        """Send any request over the pooled session (or ``client``); the raw result dict is returned."""
        client = client or self._pick_client() or await self._unleased_client()
        if client is None:
            raise self._unavailable()
        try:
            with anyio.fail_after(self.spec.timeout):
                return await client.session._dispatcher.send_raw_request(method, params, None)  # noqa: SLF001
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream {self.name!r} did not answer {method} within {self.spec.timeout:g}s") from exc
        except Exception as exc:
            conn = self._conn_of(client)
            if _is_connection_loss(exc) and conn is not None:
                conn.dead.set()
            raise map_error(exc, self.name) from exc


async def _all_pages(fetch: Callable[..., Awaitable[Any]], attr: str, max_pages: int = 100) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(max_pages):
        page = await fetch(params=mt.PaginatedRequestParams(cursor=cursor) if cursor else None)
        items.extend(getattr(page, attr))
        cursor = page.next_cursor
        if not cursor:
            break
    return items
