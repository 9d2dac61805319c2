"""MCP sessions per principal: capped, bound to the key that opened them, reaped when idle."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.app import create_app
from router.upstreams.manifest import parse_manifest
from tests.asgi_server import serve_asgi as serve
from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.context import ServerContext
from vsm_mcp.keys import create_key
from vsm_mcp.tenants import create_tenant

pytestmark = pytest.mark.anyio

ECHO = {"name": "echo", "kind": "builtin", "target": "tests.integration.edge.echo_server:build"}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json",
          "mcp-protocol-version": "2025-11-25"}


async def initialize(http: httpx.AsyncClient, key: str | None = None) -> httpx.Response:
    headers = {**ACCEPT, **({"authorization": key} if key else {})}
    return await http.post("/mcp", json=INIT, headers=headers)


async def test_sessions_are_capped_per_principal_and_bound_to_their_key(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / ".vsm", max_sessions_per_principal=3, session_idle_s=1.0,
                             edge_rate_per_s=1000, edge_rate_burst=1000)
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    ctx = ServerContext.create(settings)
    await create_tenant(ctx.db, "acme")
    keys = ["Bearer " + (await create_key(ctx.db, "acme", ["tools:call"]))[0] for _ in range(2)]
    app = create_app(settings, ctx, specs=parse_manifest({"upstreams": [ECHO]}, "m.yaml"))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        opened: list[str] = []
        for _ in range(3):
            r = await initialize(http)
            assert r.status_code == 200, r.text
            opened.append(r.headers["mcp-session-id"])
        r = await initialize(http)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        body: dict[str, Any] = r.json()
        assert "anonymous caller at 127.0.0.1" in body["error"]["message"] and "3" in body["error"]["message"]
        # another principal has its own budget, and cannot use a session it did not open
        r = await initialize(http, keys[0])
        assert r.status_code == 200
        sid = r.headers["mcp-session-id"]
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        theirs = await http.post("/mcp", json=ping, headers={**ACCEPT, "authorization": keys[1], "mcp-session-id": sid})
        assert theirs.status_code == 404
        mine = await http.post("/mcp", json=ping, headers={**ACCEPT, "authorization": keys[0], "mcp-session-id": sid})
        assert mine.status_code == 200
        # idle sessions are reaped: the anonymous caller can open new ones again
        await asyncio.sleep(1.5)
        r = await initialize(http)
        assert r.status_code == 200, r.text
