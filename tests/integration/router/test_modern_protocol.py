"""Regression: clients on the 2026-07-28 protocol (the mcp SDK's default mode) get valid results.

The aggregate's tools/list used to return a bare mapping without `resultType`/`ttlMs`/
`cacheScope`, which the SDK rejects in the modern era ("Handler returned an invalid result").
"""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from router.fastlane.hot_protocol import HotLaneProtocol
from tests.integration.router.conftest import serve_router, stdio_entry

pytestmark = pytest.mark.anyio


async def test_default_mode_client_lists_and_calls(http_upstream: str) -> None:
    entries = [stdio_entry("s"), {"name": "h", "kind": "http", "url": http_upstream}]
    async with serve_router(entries) as (base, app):
        fast = app.state.router_fastpath
        hot = HotLaneProtocol.served_hot
        async with Client(f"{base}/mcp") as c:  # default mode: modern protocol
            served = fast.served
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"s__add", "h__add", "find_tools", "call_tool"} <= names
            assert (await c.call_tool("h__add", {"a": 2, "b": 3})).structured_content == {"result": 5}
            failed = await c.call_tool("h__fail", {})
            assert failed.is_error
            # Answered by the fast lane (list + 2 calls), and still valid for the SDK's checks.
            assert fast.served - served == 3
            # ... and every POST /mcp took the server's hot lane (router/fastlane/hot_protocol.py).
            assert HotLaneProtocol.served_hot - hot >= 4
            found = await c.call_tool("find_tools", {"query": "add two numbers", "limit": 3})
            assert not found.is_error and "add" in found.content[0].text  # type: ignore[union-attr]
            with pytest.raises(MCPError) as unknown:
                await c.call_tool("s__nope", {})
            assert unknown.value.code == -32601
        async with Client(f"{base}/mcp/h") as c:
            assert "add" in {t.name for t in (await c.list_tools()).tools}
            assert (await c.call_tool("add", {"a": 1, "b": 1})).structured_content == {"result": 2}


async def test_client_hanging_up_cancels_a_slow_call(http_upstream: str) -> None:
    """In the 2026-07-28 era a client cancels by closing the request; the fast lane must notice
    (its watcher starts only after WATCH_AFTER_S) and stop the upstream call, not run it out."""
    import anyio
    import httpx

    from router.fastlane.fastpath import WATCH_AFTER_S

    entries = [{"name": "h", "kind": "http", "url": http_upstream}]
    async with serve_router(entries) as (base, app):
        fast = app.state.router_fastpath
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "h__slow", "arguments": {"seconds": 30}, "_meta": meta}}
        headers = {"mcp-protocol-version": "2026-07-28", "accept": "application/json, text/event-stream",
                   "mcp-method": "tools/call", "mcp-name": "h__slow"}
        started = anyio.current_time()
        async with httpx.AsyncClient(timeout=30) as http:
            with anyio.move_on_after(WATCH_AFTER_S + 0.5):
                await http.post(f"{base}/mcp", json=body, headers=headers)
        for _ in range(200):
            if fast.hung_up == 1:
                break
            await anyio.sleep(0.05)
        assert fast.hung_up == 1, "the call was not cancelled when the client closed the request"
        assert anyio.current_time() - started < 20
        # The router and the upstream connection pool still serve calls.
        async with Client(f"{base}/mcp") as c:
            assert (await c.call_tool("h__add", {"a": 2, "b": 2})).structured_content == {"result": 4}


async def test_raw_http_lane_times_out_and_keeps_serving(http_upstream: str) -> None:
    """The sessionless upstream lane enforces the manifest timeout as a distinct error."""
    entries = [{"name": "h", "kind": "http", "url": http_upstream, "timeout": 0.3}]
    async with serve_router(entries) as (base, _app):
        async with Client(f"{base}/mcp") as c:
            with pytest.raises(MCPError, match="did not answer 'slow' within 0.3s"):
                await c.call_tool("h__slow", {"seconds": 5})
            assert (await c.call_tool("h__add", {"a": 1, "b": 2})).structured_content == {"result": 3}
