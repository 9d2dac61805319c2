"""Malformed JSON-RPC envelopes get one-line errors; REST bodies over the limit get 413 unread.

Before (issue 19): ``[1,2,3]``, a missing ``jsonrpc`` or a numeric ``method`` were answered with
a multi-line pydantic dump with documentation URLs; an object ``id`` was taken for a
notification (202, empty body); ``POST /v1/tools/{name}/call`` read a 50 MB body, then said 400.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.integration.router.conftest import serve_router, stdio_entry

pytestmark = pytest.mark.anyio

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
BAD = [
    (b"[1,2,3]", "Invalid Request"),
    (b'{"id": 1, "method": "tools/list"}', "jsonrpc"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": 42}', "method"),
    (b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "tools/list"}', "id"),
    (b'{"jsonrpc": "2.0", "id": 1.5, "method": "tools/list"}', "id"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": [1]}', "params"),
    (b"{nope", "Parse error"),
]


def check_one_line(resp: httpx.Response, hint: str) -> None:
    assert resp.status_code == 400, resp.text
    body = resp.json()
    err = body["error"]
    assert err["code"] in (-32600, -32700), body
    assert "\n" not in err["message"] and "pydantic" not in resp.text and "http" not in err["message"]
    assert hint.lower() in err["message"].lower(), err["message"]
    assert err["message"].startswith(("Invalid Request: ", "Parse error: ")), err["message"]


async def test_bad_envelopes_on_the_aggregate_and_a_server_endpoint() -> None:
    async with serve_router([stdio_entry("s")]) as (base, _app):
        async with httpx.AsyncClient(timeout=30) as http:
            for path in ("/mcp", "/mcp/s"):
                for body, hint in BAD:
                    check_one_line(await http.post(f"{base}{path}", content=body, headers=HEADERS), hint)
                # 2026-07-28 era requests too
                modern = {**HEADERS, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
                check_one_line(await http.post(f"{base}{path}", content=BAD[3][0], headers=modern), "id")


async def test_rest_call_over_the_limit_is_refused_before_the_body() -> None:
    async with serve_router([stdio_entry("s")], max_body_bytes=64 * 1024) as (base, _app):
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(
                b"POST /v1/tools/s__echo/call HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 52428800\r\n\r\n" + b"x" * 1024
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)  # answered without the 50 MB
            assert head.startswith(b"HTTP/1.1 413"), head
        finally:
            writer.close()
