"""A lean streamable-HTTP session for the hot path: ``tools/call`` to an HTTP upstream.

The mcp SDK client is built for generality (typed models both ways, memory streams, a task
hop per message, output-schema validation); per call that costs about as much as the
upstream's own work, which would double the latency of every routed call. This session
speaks just enough of the streamable HTTP transport for ``tools/call``: it initialises once
(its own ``Mcp-Session-Id``, over httpx), then each call is one POST on a kept-alive connection
(router/upstreams/http11.py). When the upstream also serves the sessionless 2026-07-28 era (probed once
with ``server/discover``), a call without progress goes in that era: one self-contained POST
answered with plain JSON. Otherwise the answer is
read either as JSON or as an SSE stream (progress notifications for the call are
relayed on the way). Everything else — lists, notifications, health pings, server→client
requests — stays on the SDK session the supervisor keeps next to it.

Errors are mapped here: transport failures → ``UpstreamUnavailable``; a JSON-RPC error → the
same mapping as the SDK path (router/upstreams/upstream.py ``map_error``). An expired session (HTTP 404)
is re-initialised once, transparently.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import mcp.types as mt
from mcp.shared.exceptions import MCPError

from router.upstreams.http11 import Http11Pool, HttpError, Response
from vsm_mcp import json_fast
from vsm_mcp.errors import UpstreamUnavailable

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]
LogFn = Callable[[str, Any, str | None], Awaitable[None]]  # (level, data, logger) of a log message
PROTOCOL_VERSION = "2025-11-25"
MODERN_VERSION = "2026-07-28"
_ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
    "io.modelcontextprotocol/clientInfo": {"name": "vsm-mcp-router", "version": "0.1.0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
_ACCEPT = "application/json, text/event-stream"


class SessionExpired(Exception):
    """The upstream forgot our session (HTTP 404); re-initialise."""


class RawHttpSession:
    """See the module docstring. ``await open()`` once; ``call_tool`` from many tasks at once."""

    def __init__(self, name: str, url: str, headers: dict[str, str], timeout: float) -> None:
        self.name = name
        self.url = url
        self.headers = {**headers, "accept": _ACCEPT, "content-type": "application/json"}
        self.timeout = timeout
        self.session_id: str | None = None
        self.protocol_version = PROTOCOL_VERSION
        # True when the upstream also serves the sessionless 2026-07-28 era (server/discover):
        # plain calls then go as one self-contained JSON POST, no session, no SSE answer.
        self.modern = False
        self._ids = itertools.count(1)
        self._pool = Http11Pool(url)
        self._modern_head: dict[str, bytes] = {}
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def open(self) -> None:
        self.session_id = None
        init = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "vsm-mcp-router", "version": "0.1.0"},
            },
        }
        async with self._http.stream("POST", self.url, json=init, headers=self.headers) as resp:
            if resp.status_code >= 400:
                raise UpstreamUnavailable(f"upstream {self.name!r} refused initialize: HTTP {resp.status_code}")
            sid = resp.headers.get("mcp-session-id")
            msg = await self._read_response(resp, init["id"], None)
        if "error" in msg:
            raise UpstreamUnavailable(f"upstream {self.name!r} refused initialize: {msg['error'].get('message')}")
        self.protocol_version = str(msg.get("result", {}).get("protocolVersion", PROTOCOL_VERSION))
        self.session_id = sid
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        r = await self._http.post(self.url, json=note, headers=self._session_headers())
        if r.status_code >= 400:
            raise UpstreamUnavailable(f"upstream {self.name!r} rejected notifications/initialized: HTTP {r.status_code}")
        self.modern = await self._discover_modern()

    async def _discover_modern(self) -> bool:
        """Does the upstream serve 2026-07-28? One ``server/discover``; any failure means no."""
        probe = {"jsonrpc": "2.0", "id": next(self._ids), "method": "server/discover", "params": {"_meta": _ENVELOPE}}
        headers = {**self.headers, "mcp-protocol-version": MODERN_VERSION, "mcp-method": "server/discover"}
        try:
            r = await self._http.post(self.url, json=probe, headers=headers)
            if r.status_code != 200 or not r.headers.get("content-type", "").startswith("application/json"):
                return False
            versions = r.json().get("result", {}).get("supportedVersions", [])
        except (httpx.HTTPError, ValueError, AttributeError):
            return False
        return isinstance(versions, list) and MODERN_VERSION in versions

    def _modern_headers(self, tool: str) -> bytes:
        """The encoded headers of a sessionless tools/call, built once per tool name."""
        head = self._modern_head.get(tool)
        if head is None:
            if len(self._modern_head) > 4096:
                self._modern_head.clear()
            head = self._modern_head[tool] = Http11Pool.encode_headers(
                {**self.headers, "mcp-protocol-version": MODERN_VERSION, "mcp-method": "tools/call", "mcp-name": tool}
            )
        return head

    def _session_headers(self) -> dict[str, str]:
        h = dict(self.headers)
        h["mcp-protocol-version"] = self.protocol_version
        if self.session_id:
            h["mcp-session-id"] = self.session_id
        return h

    async def aclose(self) -> None:
        if self.session_id:
            try:
                await self._http.delete(self.url, headers=self._session_headers(), timeout=2.0)
            except httpx.HTTPError:
                pass
        self._pool.close()
        await self._http.aclose()

    async def call_tool(
        self, tool: str, arguments: dict[str, Any], meta: dict[str, Any] | None, progress: ProgressFn | None,
        *, as_json: bool = False, notify: LogFn | None = None,
    ) -> Any:
        """A ``CallToolResult``; with ``as_json`` the result object as the upstream sent it.
        ``notify(level, data, logger)`` gets the log messages the upstream streams with the answer."""
        rid = next(self._ids)
        try:
            try:
                result = await self._call_once(rid, tool, arguments, meta, progress, notify)
            except SessionExpired:
                await self.open()
                rid = next(self._ids)
                result = await self._call_once(rid, tool, arguments, meta, progress, notify)
        except (httpx.HTTPError, HttpError) as exc:
            raise UpstreamUnavailable(
                f"upstream {self.name!r} is unreachable: {type(exc).__name__}: {exc}".rstrip(": "),
                data={"server": self.name},
            ) from exc
        except anyio.get_cancelled_exc_class():
            await self._tell_cancelled(rid)
            raise
        if not isinstance(result, dict) or not isinstance(result.get("content"), list):
            raise MCPError(mt.INTERNAL_ERROR, f"upstream {self.name!r} answered tools/call without a result's content list")
        if as_json:  # the client validates what it receives; a proxy passes the answer through
            return result
        return mt.CallToolResult.model_validate(result, by_name=False)

    async def _tell_cancelled(self, rid: int) -> None:
        """Our caller gave up (client cancel, timeout): tell the upstream to stop too."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            note = {"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": rid, "reason": "cancelled by the router's caller"}}
            try:
                await self._http.post(self.url, json=note, headers=self._session_headers())
            except httpx.HTTPError:
                pass

    async def _call_once(
        self, rid: int, tool: str, arguments: dict[str, Any], meta: dict[str, Any] | None, progress: ProgressFn | None,
        notify: LogFn | None = None,
    ) -> Any:
        params: dict[str, Any] = {"name": tool, "arguments": arguments}
        token = None
        if meta or progress is not None:
            m = dict(meta or {})
            if progress is not None:
                token = f"vsm-{rid}"
                m["progressToken"] = token
            params["_meta"] = m
        headers: dict[str, str] | bytes
        if self.modern and progress is None and notify is None:
            # Sessionless era: the envelope rides in _meta; a client cancels by closing the request.
            params["_meta"] = {**(meta or {}), **_ENVELOPE}
            headers = self._modern_headers(tool)
        else:
            headers = self._session_headers()
        body = json_fast.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params})
        async with self._pool.post(headers, body) as resp:
            if resp.status == 404 and self.session_id:
                await resp.read()
                raise SessionExpired()
            if resp.status >= 400:
                text = (await resp.read()).decode(errors="replace")
                raise UpstreamUnavailable(
                    f"upstream {self.name!r} answered HTTP {resp.status}: {text[:200]}",
                    data={"server": self.name, "status": resp.status},
                )
            msg = await self._read_fast(resp, rid, (token, progress) if progress is not None else None, notify)
        if "error" in msg:
            err = msg["error"]
            raise MCPError(int(err.get("code", mt.INTERNAL_ERROR)), str(err.get("message", "")), err.get("data"))
        return msg.get("result", {})

    async def _read_fast(
        self, resp: Response, rid: Any, progress: tuple[str | None, ProgressFn] | None, notify: LogFn | None = None
    ) -> dict[str, Any]:
        """The JSON-RPC answer from a router/upstreams/http11.py response (JSON, or SSE events)."""
        ctype = resp.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            data = json_fast.loads(await resp.read())
            if isinstance(data, list):
                data = next((m for m in data if m.get("id") == rid), {})
            return dict(data)
        if not ctype.startswith("text/event-stream"):
            await resp.read()
            raise UpstreamUnavailable(f"upstream {self.name!r} answered with content-type {ctype!r}")
        found: dict[str, Any] | None = None
        buf = b""
        async for chunk in resp.chunks():  # always to the end: the connection goes back to the pool
            if found is not None:
                continue
            buf += chunk.replace(b"\r\n", b"\n")
            while found is None and b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                data = b"\n".join(line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
                if not data:
                    continue
                msg = json_fast.loads(data)
                if msg.get("id") == rid and ("result" in msg or "error" in msg):
                    found = dict(msg)
                elif progress is not None and msg.get("method") == "notifications/progress":
                    p = msg.get("params", {})
                    if p.get("progressToken") == progress[0]:
                        await progress[1](float(p.get("progress", 0)), p.get("total"), p.get("message"))
                elif notify is not None and msg.get("method") == "notifications/message":
                    p = msg.get("params", {})
                    await notify(str(p.get("level", "info")), p.get("data"), p.get("logger"))
        if found is None:
            raise UpstreamUnavailable(f"upstream {self.name!r} closed the stream without answering")
        return found

    async def _read_response(
        self, resp: httpx.Response, rid: Any, progress: tuple[str | None, ProgressFn] | None
    ) -> dict[str, Any]:
        ctype = resp.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            data = json.loads(await resp.aread())
            if isinstance(data, list):  # a batch answer: pick ours
                data = next((m for m in data if m.get("id") == rid), {})
            return dict(data)
        if not ctype.startswith("text/event-stream"):
            raise UpstreamUnavailable(f"upstream {self.name!r} answered with content-type {ctype!r}")
        data_lines: list[str] = []
        found: dict[str, Any] | None = None
        async for line in resp.aiter_lines():
            if found is not None:
                # Read the stream to its end so the connection goes back to the pool (an
                # unfinished body would close it: a new TCP connection per call).
                continue
            if line.startswith("data:"):
                data_lines.append(line[5:].lstrip(" "))
                continue
            if line or not data_lines:
                continue
            msg = json.loads("\n".join(data_lines))
            data_lines = []
            if msg.get("id") == rid and ("result" in msg or "error" in msg):
                found = dict(msg)
                continue
            if progress is not None and msg.get("method") == "notifications/progress":
                p = msg.get("params", {})
                if p.get("progressToken") == progress[0]:
                    await progress[1](float(p.get("progress", 0)), p.get("total"), p.get("message"))
        if found is not None:
            return found
        if data_lines:
            msg = json.loads("\n".join(data_lines))
            if msg.get("id") == rid:
                return dict(msg)
        raise UpstreamUnavailable(f"upstream {self.name!r} closed the stream without answering")
