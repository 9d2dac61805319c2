"""Fast lane for the hottest request on ``/mcp``: a plain ``tools/call`` in an open session.

The SDK's streamable-HTTP server moves each message through memory streams, a per-session task,
a JSON-RPC dispatcher and typed models before our handler runs — about as much work as the
upstream does for the whole call. ``FastPath.handle`` answers the common case directly:

* POST with a JSON body that is one ``tools/call`` request (not a batch, no ``progressToken`` —
  progress needs the SSE response stream), or one ``tools/list`` without a cursor (answered
  with the aggregate's cached, pre-serialized bytes),
* handshake era: an ``Mcp-Session-Id`` the SDK session manager knows and has not expired, and
  an ``Accept`` that allows ``application/json``;
* 2026-07-28 era (sessionless): an ``Mcp-Method`` header that matches the body (else the SDK
  answers the era's header-mismatch error) and a ``_meta`` that holds only the era's envelope
  (protocol version, client info and capabilities); the answer gets the era's ``resultType`` and ``serverInfo`` stamp,
  and the client closing the request cancels the call.

It runs the same handler code (local tools, then the Dispatcher) and answers with one JSON
body, as the streamable HTTP transport allows. Anything else — initialize, lists, notifications,
batches, progress, GET/DELETE, malformed bodies — is handed to the SDK unchanged (the body
already read is replayed), except a ``notifications/cancelled`` for a call in flight here, which
cancels it (and the upstream call with it). Oversized bodies are refused here with 413 before parsing.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import anyio
from starlette.types import Message, Receive, Scope, Send

from router.fastlane.envelope import envelope_error, error_body
from router.gate.authn import principal_of
from vsm_mcp import json_fast
from vsm_mcp.errors import InvalidArguments, QuotaExceeded, VsmError

_MODERN = b"2026-07-28"
# How long a 2026-era call runs before the fast lane watches for the client hanging up.
WATCH_AFTER_S = 0.02


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return dict(scope.get("headers", ()))


class FastPath:
    def __init__(self, dispatcher: Any, aggregate: Any, manager: Any, *, max_body_bytes: int) -> None:
        self.dispatcher = dispatcher
        self.aggregate = aggregate
        self.manager = manager
        # Where requests the lane does not answer go: the SDK session manager, or the app's wrapper
        # of it that binds sessions to principals and caps them (router/gate/sessions.py).
        self.sdk: Any = manager.handle_request
        self.max_body_bytes = max_body_bytes
        self.served = 0
        self.hung_up = 0  # 2026-era calls cancelled because the client closed the request
        self._stamp: dict[str, Any] | None = None
        self._watch: _CallWatch | None = None
        # (session id, request id) -> cancel scope of a call in flight in the fast lane, so a
        # notifications/cancelled from the client stops it (the SDK does not know these calls).
        self._inflight: dict[tuple[bytes, str | int], anyio.CancelScope] = {}

    def _session(self, headers: dict[bytes, bytes], scope: Scope) -> Any:
        sid = headers.get(b"mcp-session-id")
        if not sid:
            return None
        key = sid.decode("latin-1")
        transport = self.manager._server_instances.get(key)  # noqa: SLF001
        if transport is None or getattr(transport, "is_terminated", False):
            return None
        # A session belongs to the principal that opened it (router/gate/sessions.py): anyone else
        # goes to the SDK, which answers 404 as for an unknown session.
        owner = getattr(self.manager, "_session_owners", {}).get(key)
        if owner is not None:
            user = scope.get("user")
            if user is None or owner.get("client_id") != user.access_token.client_id:
                return None
        idle = getattr(transport, "idle_scope", None)
        if idle is not None and idle.cancel_called:
            return None
        return transport

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the request and return True, or return False having consumed nothing."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return False
        headers = _headers(scope)
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return await refuse_oversized(scope, send, self.max_body_bytes)
        if headers.get(b"mcp-protocol-version", b"").startswith(_MODERN):
            return await self._handle_modern(scope, receive, send, headers)
        if b"application/json" not in headers.get(b"accept", b""):
            return False
        if not headers.get(b"content-type", b"").startswith(b"application/json"):
            return False
        transport = self._session(headers, scope)
        sid = headers.get(b"mcp-session-id", b"")
        if transport is None or sid.decode("latin-1") in self.aggregate.log_sessions:
            # Not ours to answer (initialize, an unknown session, a session that asked for log
            # messages — they need the SDK's streamed answer); only the envelope is checked here.
            body = await self._body(receive, send)
            if body is not None:
                await self._replay(scope, body, receive, send)
            return True
        body = await self._body(receive, send)
        if body is None:  # answered already (413) or the client went away
            return True
        cancelled = _parse_cancel(body)
        if cancelled is not None and (sid, cancelled) in self._inflight:
            self._inflight[(sid, cancelled)].cancel()
            await send_body(send, b"", status=202)
            return True
        msg = _parse_call(body)
        if msg is None:
            listing = _parse_list(body)
            if listing is not None and (raw := self._list(scope, listing["id"])) is not None:
                _touch(transport)
                await send_body(send, raw)
                self.served += 1
                return True
            await self._replay(scope, body, receive, send)
            return True
        _touch(transport)
        key = (sid, msg["id"])
        with anyio.CancelScope() as scope_:
            self._inflight[key] = scope_
            try:
                answer = await self._answer(scope, msg)
            finally:
                self._inflight.pop(key, None)
        if scope_.cancelled_caught:
            answer = {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32800, "message": "request cancelled"}}
        await send_json(send, answer)
        self.served += 1
        return True

    async def _body(self, receive: Receive, send: Send) -> bytes | None:
        """The whole request body; None when it was too large (answered 413 here) or the client left."""
        try:
            return await _read_body(receive, self.max_body_bytes)
        except _TooLarge:
            err = QuotaExceeded(f"request body exceeds VSM_MAX_BODY_BYTES ({self.max_body_bytes} bytes)")
            await send_json(send, {"jsonrpc": "2.0", "id": None, "error": err.to_jsonrpc()}, status=413)
            return None

    async def _handle_modern(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]) -> bool:
        """2026-07-28 era: every request is self-contained (no session); answer plain tools/call and
        tools/list here with the era's result envelope, hand everything else to the SDK."""
        if b"application/json" not in headers.get(b"accept", b""):
            return False
        if not headers.get(b"content-type", b"").startswith(b"application/json"):
            return False
        body = await self._body(receive, send)
        if body is None:  # answered already (413) or the client went away
            return True
        method = headers.get(b"mcp-method", b"")
        msg = _parse_call(body) if method == b"tools/call" else None
        if msg is not None and _plain_modern_meta(msg):
            answer = await self._answer_until_disconnect(scope, msg, receive)
            if answer is not None:
                if "result" in answer:
                    answer["result"] = self._modern_envelope(answer["result"])
                await send_json(send, answer)
                self.served += 1
            return True
        listing = _parse_list(body) if method == b"tools/list" else None
        if listing is not None and _plain_modern_meta(listing):
            principal = principal_of(scope)
            mode = _expose_of(scope, self.aggregate.expose)
            if principal is not None and mode is not None:
                payload = self.aggregate.tools_payload_modern(principal, mode)
                await send_json(send, {"jsonrpc": "2.0", "id": listing["id"], "result": self._modern_envelope(payload)})
                self.served += 1
                return True
        await self._replay(scope, body, receive, send)
        return True

    def _modern_envelope(self, result: dict[str, Any]) -> dict[str, Any]:
        result.setdefault("resultType", "complete")
        meta = dict(result.get("_meta") or {})
        if self._stamp is None:
            # The SDK deep-copies its stamp per access so callers may mutate it; ours is
            # serialised at once and never mutated, so one copy serves every answer.
            self._stamp = self.aggregate.server.server_info_stamp
        meta[SERVER_INFO_KEY] = self._stamp
        result["_meta"] = meta
        return result

    async def _answer_until_disconnect(
        self, scope: Scope, msg: dict[str, Any], receive: Receive
    ) -> dict[str, Any] | None:
        """The call's answer; None when the client hung up first (in this era closing the request
        is how a client cancels, so the upstream call is cancelled with it).

        Only calls that have run ``WATCH_AFTER_S`` get a disconnect watcher: a watcher task per
        call cost ~10 % of the router's CPU, and a call that answers within a few ms has nothing
        left to cancel. One sweep timer (``_CallWatch``) serves every call in flight, instead of
        a timer armed and cancelled per call."""
        task = asyncio.current_task()
        assert task is not None
        watch = self._watch
        if watch is None:
            watch = self._watch = _CallWatch(asyncio.get_running_loop())
        watched = watch.add(task, receive)
        try:
            return await self._answer(scope, msg)
        except asyncio.CancelledError:
            if watched.gone and task.uncancel() == 0:
                self.hung_up += 1
                return None
            raise
        finally:
            watch.remove(task)

    def _list(self, scope: Scope, rid: str | int) -> bytes | None:
        """tools/list from the aggregate's cached, pre-serialized listing (None: let the SDK answer)."""
        principal = principal_of(scope)
        if principal is None:
            return None
        mode = _expose_of(scope, self.aggregate.expose)
        if mode is None:
            return None
        payload: bytes = self.aggregate.tools_payload_json(principal, mode)
        return b'{"jsonrpc":"2.0","id":' + json_fast.dumps(rid) + b',"result":' + payload + b"}"

    async def _replay(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        """Hand the request to the SDK with its body replayed — unless the envelope is malformed,
        which is answered here in one line (the SDK's answer is a multi-line pydantic dump)."""
        if (bad := envelope_error(body)) is not None:
            await send_body(send, error_body(*bad), status=400)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.sdk(scope, replay, send)

    async def _answer(self, scope: Scope, msg: dict[str, Any]) -> dict[str, Any]:
        rid = msg["id"]
        params = msg.get("params") or {}
        try:
            principal = principal_of(scope)
            if principal is None:
                raise InvalidArguments("no principal on this request")
            name, arguments = params.get("name"), params.get("arguments")
            if not isinstance(name, str):
                raise InvalidArguments("tools/call needs params.name (a string)")
            if arguments is not None and not isinstance(arguments, dict):
                raise InvalidArguments(f"arguments for tool {name!r} must be a JSON object")
            local = self.aggregate.local_tools.get(name)
            if local is not None:
                typed = await local.handler(principal, arguments or {})
                result = typed.model_dump(by_alias=True, mode="json", exclude_none=True)
            else:
                result = await self.dispatcher.call_tool_json(
                    principal, name, arguments or {}, source="mcp", trace=_trace(scope, params)
                )
        except VsmError as exc:
            return {"jsonrpc": "2.0", "id": rid, "error": exc.to_jsonrpc()}
        return {"jsonrpc": "2.0", "id": rid, "result": result}


SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"
_PLAIN_META = frozenset(
    {"io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientInfo",
     "io.modelcontextprotocol/clientCapabilities", "traceparent", "tracestate"}
)


def _trace(scope: Scope, params: dict[str, Any]) -> tuple[str, str] | None:
    """(traceparent, tracestate) of a call: its ``_meta`` first (the 2026-07-28 revision's
    place), else the HTTP headers; None when the caller sent none."""
    meta = params.get("_meta")
    if meta and isinstance(meta.get("traceparent"), str):
        state = meta.get("tracestate")
        return meta["traceparent"], state if isinstance(state, str) else ""
    parent = state_ = None
    for k, v in scope.get("headers", ()):
        if k == b"traceparent":
            parent = v
        elif k == b"tracestate":
            state_ = v
    if parent is None:
        return None
    return parent.decode("latin-1"), state_.decode("latin-1") if state_ else ""


def _plain_modern_meta(msg: dict[str, Any]) -> bool:
    """True when the request's ``_meta`` is only the era's envelope (no log-level opt-in, no
    progress token, no extension keys) — what the fast lane can answer exactly like the SDK."""
    meta = (msg.get("params") or {}).get("_meta")
    return (
        isinstance(meta, dict)
        and meta.get("io.modelcontextprotocol/protocolVersion") == _MODERN.decode()
        and set(meta) <= _PLAIN_META
    )


def _expose_of(scope: Scope, default: str) -> str | None:
    mode = default
    for part in scope.get("query_string", b"").decode("latin-1").split("&"):
        if part.startswith("expose="):
            mode = part[7:]
    return mode if mode in ("all", "search", "both") else None


_MARKERS = {m: f'"{m}"'.encode() for m in ("tools/call", "tools/list")}


def _parse_request(body: bytes, method: str) -> dict[str, Any] | None:
    """The message if ``body`` is one well-formed JSON-RPC request for ``method``, else None."""
    if _MARKERS[method] not in body:
        return None
    try:
        msg = json_fast.loads(body)
    except ValueError:
        return None
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0" or msg.get("method") != method:
        return None
    rid = msg.get("id")
    if not isinstance(rid, str | int) or isinstance(rid, bool):
        return None
    params = msg.get("params")
    if params is not None and not isinstance(params, dict):
        return None
    return msg


def _parse_call(body: bytes) -> dict[str, Any] | None:
    """The message if ``body`` is a single, well-formed tools/call request without a progressToken."""
    msg = _parse_request(body, "tools/call")
    if msg is None:
        return None
    meta = (msg.get("params") or {}).get("_meta")
    if meta is not None and (not isinstance(meta, dict) or "progressToken" in meta):
        return None
    return msg


async def refuse_oversized(scope: Scope, send: Send, limit: int) -> bool:
    """Answer 413 with a JSON-RPC error when Content-Length exceeds ``limit`` (chunked bodies
    are cut off by the SDK's own limit while they stream in)."""
    for k, v in scope.get("headers", ()):
        if k == b"content-length":
            if v.isdigit() and int(v) > limit:
                err = QuotaExceeded(f"request body of {int(v)} bytes exceeds VSM_MAX_BODY_BYTES ({limit} bytes)")
                await send_json(send, {"jsonrpc": "2.0", "id": None, "error": err.to_jsonrpc()}, status=413)
                return True
            break
    return False


class _TooLarge(Exception):
    pass


async def checked_body(receive: Receive, send: Send, limit: int) -> bytes | None:
    """The request body for an endpoint that hands it to the SDK: None when it was answered here
    already — 413 past ``limit``, 400 for a malformed JSON-RPC envelope — or the client left."""
    try:
        body = await _read_body(receive, limit)
    except _TooLarge:
        err = QuotaExceeded(f"request body exceeds VSM_MAX_BODY_BYTES ({limit} bytes)")
        await send_json(send, {"jsonrpc": "2.0", "id": None, "error": err.to_jsonrpc()}, status=413)
        return None
    if body is not None and (bad := envelope_error(body)) is not None:
        await send_body(send, error_body(*bad), status=400)
        return None
    return body


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` (already read) first, then the connection's messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _parse_cancel(body: bytes) -> str | int | None:
    """The requestId of a notifications/cancelled body, else None."""
    if b'"notifications/cancelled"' not in body:
        return None
    try:
        msg = json_fast.loads(body)
    except ValueError:
        return None
    if not isinstance(msg, dict) or msg.get("method") != "notifications/cancelled":
        return None
    rid = (msg.get("params") or {}).get("requestId")
    return rid if isinstance(rid, str | int) and not isinstance(rid, bool) else None


def _parse_list(body: bytes) -> dict[str, Any] | None:
    """The message if ``body`` is a single tools/list request without a cursor."""
    msg = _parse_request(body, "tools/list")
    if msg is None or (msg.get("params") or {}).get("cursor"):
        return None
    return msg


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _touch(transport: Any) -> None:
    """Keep the SDK session from idling out while it is used only through the fast lane."""
    idle = getattr(transport, "idle_scope", None)
    timeout = getattr(transport, "_idle_timeout", None)
    if idle is not None and timeout is not None and idle.deadline != math.inf:
        idle.deadline = anyio.current_time() + timeout


async def send_json(send: Send, payload: dict[str, Any], status: int = 200) -> None:
    await send_body(send, json_fast.dumps(payload), status)


async def send_body(send: Send, body: bytes, status: int = 200) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Watched:
    __slots__ = ("task", "receive", "since", "gone", "watcher")

    def __init__(self, task: asyncio.Task[Any], receive: Receive, since: float) -> None:
        self.task, self.receive, self.since = task, receive, since
        self.gone = False
        self.watcher: asyncio.Task[None] | None = None


class _CallWatch:
    """2026-era calls in flight; a call still running ``WATCH_AFTER_S`` after it started gets a
    task that waits for the client to hang up and then cancels it. One timer sweeps every
    ``WATCH_AFTER_S`` while calls are in flight, so a call that is over sooner costs a dict
    insert and delete."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.calls: dict[asyncio.Task[Any], _Watched] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, task: asyncio.Task[Any], receive: Receive) -> _Watched:
        watched = self.calls[task] = _Watched(task, receive, self.loop.time())
        if self._timer is None:
            self._timer = self.loop.call_later(WATCH_AFTER_S, self._sweep)
        return watched

    def remove(self, task: asyncio.Task[Any]) -> None:
        watched = self.calls.pop(task, None)
        if watched is not None and watched.watcher is not None:
            watched.watcher.cancel()

    def _sweep(self) -> None:
        self._timer = None
        due = self.loop.time() - WATCH_AFTER_S
        for watched in self.calls.values():
            if watched.watcher is None and watched.since <= due:
                watched.watcher = self.loop.create_task(_wait_for_hang_up(watched))
        if self.calls:
            self._timer = self.loop.call_later(WATCH_AFTER_S, self._sweep)


async def _wait_for_hang_up(watched: _Watched) -> None:
    while (await watched.receive())["type"] != "http.disconnect":
        pass
    watched.gone = True
    watched.task.cancel()
