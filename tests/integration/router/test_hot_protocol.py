"""router/fastlane/hot_protocol.py over raw sockets: the HTTP/1.1 rules the hot lane must keep.

Pipelined requests are answered in order (a hot one and a normal one), keep-alive is reused
and ``Connection: close`` honoured, a streamed (SSE) answer from the SDK is chunk-framed, bad
JSON-RPC and oversized bodies get their JSON-RPC errors, other paths take uvicorn's normal road,
and an exception in the app is a 500 that closes only that connection.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
import pytest

from router.fastlane.hot_protocol import HotLaneProtocol
from tests.integration.router.conftest import serve_router

pytestmark = pytest.mark.anyio

MODERN = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def request(body: dict[str, Any] | bytes, *, method: str = "tools/call", path: str = "/mcp",
            extra: str = "", name: str = "") -> bytes:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"accept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\n"
        f"mcp-method: {method}\r\n" + (f"mcp-name: {name}\r\n" if name else "") + extra
        + f"content-length: {len(raw)}\r\n\r\n"
    )
    return head.encode() + raw


def call(rid: int, tool: str, args: dict[str, Any]) -> bytes:
    msg = {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": tool, "arguments": args, "_meta": MODERN}}
    return request(msg, name=tool)


async def responses(reader: asyncio.StreamReader, n: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Read ``n`` HTTP/1.1 responses with h11 (a strict parser: framing errors fail the test)."""
    conn = h11.Connection(h11.CLIENT)
    # h11 needs to have "sent" the requests to accept responses.
    out: list[tuple[int, dict[str, str], bytes]] = []
    for _ in range(n):
        conn.send(h11.Request(method="POST", target="/mcp", headers=[("host", "x"), ("content-length", "0")]))
        conn.send(h11.EndOfMessage())
        status, headers, body = 0, {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(65536), 30)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        out.append((status, headers, body))
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            break
        conn.start_next_cycle()
    return out


async def test_pipelined_keep_alive_and_close(http_upstream: str) -> None:
    async with serve_router([{"name": "h", "kind": "http", "url": http_upstream}]) as (base, _app):
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        hot_before = HotLaneProtocol.served_hot
        # Three requests in one write: slow hot call, a normal-road GET, a fast hot call.
        writer.write(
            call(1, "h__slow", {"seconds": 0.3})
            + b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
            + call(2, "h__add", {"a": 2, "b": 3})
        )
        got = await responses(reader, 3)
        assert [s for s, _, _ in got] == [200, 200, 200]
        assert json.loads(got[0][2])["id"] == 1 and json.loads(got[0][2])["result"]["content"][0]["text"] == "done"
        assert json.loads(got[2][2])["result"]["structuredContent"] == {"result": 5}
        assert got[0][1]["content-length"] == str(len(got[0][2]))
        # The same connection keeps serving; Connection: close is honoured after the answer.
        writer.write(call(3, "h__add", {"a": 1, "b": 1}).replace(b"content-type", b"connection: close\r\ncontent-type", 1))
        (status, headers, body), = await responses(reader, 1)
        assert status == 200 and headers.get("connection") == "close" and json.loads(body)["id"] == 3
        assert await asyncio.wait_for(reader.read(), 10) == b""  # the server closed it
        writer.close()
        # Calls 1 and 3 took the hot lane; call 2 arrived pipelined behind the GET, so uvicorn's
        # own road queued it (the order of answers is what HTTP/1.1 requires).
        assert HotLaneProtocol.served_hot - hot_before == 2


async def test_errors_and_streams_on_the_hot_lane(http_upstream: str) -> None:
    async with serve_router([{"name": "h", "kind": "http", "url": http_upstream}], max_body_bytes=4096) as (base, _app):
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": '))  # cut off JSON
        (status, _h, body), = await responses(reader, 1)
        err = json.loads(body)["error"]
        assert status in (200, 400) and err["code"] == -32700, body
        writer.write(call(2, "nope__missing", {}))
        (status, _h, body), = await responses(reader, 1)
        assert json.loads(body)["error"]["code"] == -32601 and "nope__missing" in json.loads(body)["error"]["message"]
        hot = HotLaneProtocol.served_hot
        writer.write(request(b'{"x": "' + b"a" * 5000 + b'"}'))
        (status, _h, body), = await responses(reader, 1)
        assert status == 413 and "VSM_MAX_BODY_BYTES" in json.loads(body)["error"]["message"]
        writer.close()
        # A body the hot lane would have to buffer unbounded (chunked, no Content-Length) takes
        # uvicorn's road, which stops reading and lets the app answer 413 before it is all in.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = request(b"").split(b"content-length: 0\r\n", 1)[0] + b"transfer-encoding: chunked\r\n\r\n"
        writer.write(head + b"1000\r\n" + b"a" * 4096 + b"\r\n" + b"1000\r\n" + b"a" * 4096 + b"\r\n0\r\n\r\n")
        (status, _h, body), = await responses(reader, 1)
        assert status == 413, body
        assert HotLaneProtocol.served_hot == hot  # neither the 413 by length nor the chunked one
        writer.close()

        # A handshake-era initialize is answered by the SDK as a stream: chunk-framed, parsed by h11.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
        raw = request(init, method="initialize").replace(b"mcp-protocol-version: 2026-07-28\r\n", b"")
        writer.write(raw)
        (status, headers, body), = await responses(reader, 1)
        assert status == 200, body
        text = body.decode()
        if headers["content-type"].startswith("text/event-stream"):
            assert headers.get("transfer-encoding") == "chunked"
            text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
        assert json.loads(text)["result"]["serverInfo"]["name"] == "vsm-mcp"
        writer.close()


async def test_an_app_exception_is_a_500_that_closes_only_that_connection(http_upstream: str) -> None:
    async with serve_router([{"name": "h", "kind": "http", "url": http_upstream}]) as (base, app):
        port = int(base.rsplit(":", 1)[1])
        real = app.hot_path

        async def boom(scope: Any, receive: Any, send: Any) -> None:
            raise RuntimeError("injected")

        app.hot_path = boom
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(call(1, "h__add", {"a": 1, "b": 1}))
            (status, headers, _b), = await responses(reader, 1)
            assert status == 500 and headers["connection"] == "close"
            writer.close()
        finally:
            app.hot_path = real
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(call(2, "h__add", {"a": 1, "b": 1}))
        (status, _h, body), = await responses(reader, 1)
        assert status == 200 and json.loads(body)["result"]["structuredContent"] == {"result": 2}
        writer.close()
