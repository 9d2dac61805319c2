"""Regression: clients on the 2026-07-28 protocol (the mcp SDK's default mode) get valid results.

The aggregate's tools/list used to return a bare mapping without `resultType`/`ttlMs`/
`cacheScope`, which the SDK rejects in the modern era ("Handler returned an invalid result").
"""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.integration.router.conftest import serve_router, stdio_entry

pytestmark = pytest.mark.anyio


async def test_default_mode_client_lists_and_calls(http_upstream: str) -> None:
    entries = [stdio_entry("s"), {"name": "h", "kind": "http", "url": http_upstream}]
    async with serve_router(entries) as (base, app):
        fast = app.state.router_fastpath
        async with Client(f"{base}/mcp") as c:  # default mode: modern protocol
            served = fast.served
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"s__add", "h__add", "find_tools", "call_tool"} <= names
            assert (await c.call_tool("h__add", {"a": 2, "b": 3})).structured_content == {"result": 5}
            failed = await c.call_tool("h__fail", {})
            assert failed.is_error
            # Answered by the fast lane (list + 2 calls), and still valid for the SDK's checks.
            assert fast.served - served == 3
            found = await c.call_tool("find_tools", {"query": "add two numbers", "limit": 3})
            assert not found.is_error and "add" in found.content[0].text  # type: ignore[union-attr]
            with pytest.raises(MCPError) as unknown:
                await c.call_tool("s__nope", {})
            assert unknown.value.code == -32601
        async with Client(f"{base}/mcp/h") as c:
            assert "add" in {t.name for t in (await c.list_tools()).tools}
            assert (await c.call_tool("add", {"a": 1, "b": 1})).structured_content == {"result": 2}
