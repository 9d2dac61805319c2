"""uvicorn's httptools protocol, with a shorter road for POST requests to exactly ``/mcp``.

Why: after the fast lane (router/fastlane/fastpath.py) and the lean upstream client, the biggest single
cost left on a routed call was uvicorn's per-request ASGI machinery — a scope plus a
``RequestResponseCycle`` with its ``asyncio.Event``, the proxy-headers middleware, header
validation and two socket writes per response (head, then body). A bare uvicorn+ASGI forwarding
proxy measured 0.31–0.38 ms of CPU per call on this machine, the same proxy on a raw
uvloop/httptools protocol 0.19–0.26 ms.

What stays the same: the request still runs our ASGI app (``_RouterApp``: guard → auth → fast
lane → SDK), so every rule applies as on any other request. Only the server side is smaller: the
body is collected by the parser callbacks, ``receive``/``send`` are two closures, and a
response whose body comes in one piece is written in one ``write`` with its ``Content-Length``.
Streamed responses (the SDK answering with SSE) are framed as HTTP/1.1 chunks.

How it stays a good HTTP/1.1 citizen: while a hot request is in flight, ``self.cycle`` is a
``_HotCycle`` that looks to uvicorn like an unfinished cycle — so a pipelined request is queued
behind it, ``connection_lost`` marks it disconnected (the 2026-07-28 era's way to cancel a
call), and a graceful shutdown lets it finish. When it completes, uvicorn's own
``on_response_complete`` arms the keep-alive timer or starts the next pipelined request.

Not written on this road: uvicorn's access-log line (every call is audited as an episode row
and counted in /metrics instead).

Anything unusual takes uvicorn's normal road: other paths and methods, a query string, a
root path, ``Expect: 100-continue``, upgrades, forwarded headers (the proxy-headers middleware
must see them), a body without ``Content-Length`` or larger than the app's ``hot_max_body``, a
concurrency limit, or a previous request still being answered.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from router.upstreams.http11 import LAST_CHUNK, http_chunk
from vsm_mcp.internals import missing, version_in

log = logging.getLogger(__name__)

# The private side of uvicorn's HttpToolsProtocol this subclass relies on; checked at start-up
# (``self_check``) together with the version range pinned in pyproject.toml.
UVICORN_TESTED = ("0.54", "0.55")
_BASE_INTERNALS = (
    "config", "scope", "cycle", "parser", "tasks", "flow", "url", "transport", "server_state", "root_path",
    "pipeline", "loop", "limit_concurrency", "headers", "on_headers_complete", "on_body",
    "on_message_complete", "on_response_complete",
)

HOT_PATH = b"/mcp"
# Request headers that send a request down uvicorn's normal road (see the module docstring).
_NOT_HOT = frozenset({b"expect", b"upgrade", b"x-forwarded-for", b"x-forwarded-proto", b"forwarded"})


class _HotCycle:
    """What uvicorn's protocol sees as ``self.cycle`` while a hot request is in flight."""

    __slots__ = ("response_complete", "keep_alive", "disconnected", "message_event")

    def __init__(self, keep_alive: bool) -> None:
        self.response_complete = False
        self.keep_alive = keep_alive
        self.disconnected = False
        self.message_event = asyncio.Event()


class HotLaneProtocol(HttpToolsProtocol):
    """``uvicorn.run(app, http=HotLaneProtocol)`` for an app with a ``hot_path`` (router.app)."""

    served_hot = 0  # across connections, for tests and curiosity

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        app: Any = self.config.app
        self._hot_app: Any = app if getattr(app, "hot_path", None) is not None else None
        self._hot: _HotCycle | None = None
        self._hot_body: list[bytes] = []

    # --- parser callbacks -------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        if self._hot_app is not None and self._takes_hot_lane():
            self.scope["method"] = "POST"
            self.scope["path"] = "/mcp"
            self.scope["raw_path"] = HOT_PATH
            self.scope["query_string"] = b""
            version = self.parser.get_http_version()
            if version != "1.1":
                self.scope["http_version"] = version
            self._hot = _HotCycle(keep_alive=version != "1.0" and self.parser.should_keep_alive())
            self._hot_body = []
            self.cycle = self._hot  # type: ignore[assignment]
            return
        super().on_headers_complete()

    def _takes_hot_lane(self) -> bool:
        if self.url != HOT_PATH or self.parser.get_method() != b"POST" or self.root_path:
            return False
        if self.limit_concurrency is not None or self.pipeline:
            return False
        if self.cycle is not None and not self.cycle.response_complete:
            return False  # a pipelined request: uvicorn keeps the order
        length = -1
        for name, value in self.headers:
            if name in _NOT_HOT:
                return False
            if name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"transfer-encoding":
                return False
        # The body is collected before the app runs, so only a declared, bounded one: chunked or
        # oversized bodies take uvicorn's road, where reading pauses and the app answers 413.
        limit: int = self._hot_app.hot_max_body
        return 0 <= length <= limit

    def on_body(self, body: bytes) -> None:
        if self._hot is not None and self._cycle_is(self._hot):
            self._hot_body.append(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        hot = self._hot
        if hot is not None and self._cycle_is(hot):
            body = b"".join(self._hot_body)
            self._hot_body = []
            task = self.loop.create_task(self._serve_hot(hot, self.scope, body))
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)
            return
        super().on_message_complete()

    def _cycle_is(self, hot: _HotCycle) -> bool:
        cycle: Any = self.cycle  # uvicorn types it as its own cycle; ours stands in for one
        return cycle is hot

    # --- the request --------------------------------------------------------------------------
    async def _serve_hot(self, cycle: _HotCycle, scope: Any, body: bytes) -> None:
        transport = self.transport
        state: dict[str, Any] = {"start": None, "head_sent": False, "chunked": False, "body_given": False}

        async def receive() -> dict[str, Any]:
            if not state["body_given"]:
                state["body_given"] = True
                return {"type": "http.request", "body": body, "more_body": False}
            if not cycle.disconnected and not cycle.response_complete:
                await cycle.message_event.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                if state["start"] is not None:
                    raise RuntimeError("http.response.start sent twice")
                state["start"] = message
                return
            if kind != "http.response.body" or state["start"] is None or cycle.response_complete:
                raise RuntimeError(f"unexpected ASGI message {kind!r} on the hot lane")
            data: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            if cycle.disconnected:
                return  # like uvicorn: the client is gone, the app may still finish
            if not state["head_sent"]:
                state["head_sent"] = True
                head, state["chunked"] = self._head(state["start"], data, more, cycle)
                transport.write(head + (_chunk(data, last=not more) if state["chunked"] else data))
            elif state["chunked"]:
                transport.write(_chunk(data, last=not more))
            elif data:
                transport.write(data)
            if not more:
                cycle.response_complete = True
            elif self.flow.write_paused:
                await self.flow.drain()

        try:
            await self._hot_app(scope, receive, send)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                transport.close()
                raise
            log.exception("exception on the /mcp hot lane")
            if state["start"] is None and not cycle.disconnected:
                transport.write(_INTERNAL_ERROR)
            transport.close()
        else:
            if not cycle.response_complete and not cycle.disconnected:
                log.error("the /mcp handler returned without completing its response")
                if state["start"] is None:
                    transport.write(_INTERNAL_ERROR)
                transport.close()
        finally:
            HotLaneProtocol.served_hot += 1
            self._hot = None
            if cycle.response_complete and not cycle.disconnected:
                if cycle.keep_alive:
                    self.on_response_complete()
                else:
                    transport.close()

    def _head(self, start: dict[str, Any], data: bytes, more: bool, cycle: _HotCycle) -> tuple[bytes, bool]:
        status = int(start.get("status", 200))
        parts = [STATUS_LINE.get(status) or b"HTTP/1.1 %d \r\n" % status]
        for name, value in self.server_state.default_headers:
            parts += [name, b": ", value, b"\r\n"]
        has_length = False
        for name, value in start.get("headers", ()):
            lname = name.lower()
            if lname == b"content-length":
                has_length = True
            elif lname == b"connection" and b"close" in value.lower():
                cycle.keep_alive = False
            parts += [lname, b": ", value, b"\r\n"]
        chunked = False
        if not has_length:
            if more:
                chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                parts += [b"content-length: ", str(len(data)).encode(), b"\r\n"]
        if not cycle.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        return b"".join(parts), chunked


def _chunk(data: bytes, last: bool) -> bytes:
    framed = http_chunk(data) if data else b""
    return framed + LAST_CHUNK if last else framed


_INTERNAL_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error"
)


def self_check() -> str | None:
    """None when the uvicorn installed here is the one the hot lane was written against; else
    why not (``vsm-mcp serve`` then logs it in one line and serves with uvicorn's own protocol)."""
    return version_in("uvicorn", *UVICORN_TESTED) or missing(HttpToolsProtocol, _BASE_INTERNALS)


def http_protocol(wanted: bool) -> Any:
    """What ``uvicorn.run(http=…)`` gets: the hot lane when wanted and its self-check passes."""
    if not wanted:
        return "auto"
    reason = self_check()
    if reason is not None:
        log.warning("hot lane off, serving with uvicorn's own protocol: %s", reason)
        return "auto"
    return HotLaneProtocol
