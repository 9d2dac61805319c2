"""Tool search inside the running router: meta-tools over the real mcp SDK client, search mode,
list_changed, grants, REST ``GET /v1/tools``, and no re-embedding across a restart."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from sqlmodel import select

from tests.integration.router.conftest import serve_router
from tests.polling import eventually
from vsm_mcp.db import Database
from vsm_mcp.models import Episode
from vsm_mcp.tenants import create_api_key, ensure_tenant

pytestmark = pytest.mark.anyio
MOD = "tests.integration.registry.dynamic_server"
ENTRIES: list[dict[str, Any]] = [
    {"name": "dyn", "kind": "builtin", "target": f"{MOD}:build"},
    {"name": "sec", "kind": "builtin", "target": f"{MOD}:build_secret", "tags": ["policy:admin"]},
]


def found(result: Any) -> list[str]:
    assert not result.is_error, result
    return [t["name"] for t in result.structured_content["tools"]]


async def test_search_mode_meta_tools_and_the_full_pipeline() -> None:
    async with serve_router(ENTRIES, embedder="hash", rate_limit=2, rate_burst=4) as (base, app):
        async with Client(f"{base}/mcp?expose=search", mode="legacy") as c:
            assert sorted(t.name for t in (await c.list_tools()).tools) == ["call_tool", "find_tools"]
            hits = await c.call_tool("find_tools", {"query": "add two integers sum", "limit": 3})
            assert found(hits)[0] == "dyn__add"
            first = hits.structured_content["tools"][0]  # type: ignore[index]
            assert first["input_schema"]["properties"].keys() == {"a", "b"} and 0 < first["score"] <= 1
            assert hits.structured_content["no_match"] is False  # type: ignore[index]
            pizza = await c.call_tool("find_tools", {"query": "order a pepperoni pizza for tonight", "limit": 2})
            assert pizza.structured_content["no_match"] is True and len(found(pizza)) == 2  # type: ignore[index]
            ok = await c.call_tool("call_tool", {"name": "dyn__add", "arguments": {"a": 2, "b": 3}})
            assert ok.structured_content == {"result": 5}
            with pytest.raises(MCPError) as invalid:  # validation of the target tool's schema
                await c.call_tool("call_tool", {"name": "dyn__add", "arguments": {"a": "x", "b": 1}})
            assert invalid.value.code == -32602 and "'a'" in invalid.value.message
            with pytest.raises(MCPError) as unknown:
                await c.call_tool("call_tool", {"name": "dyn__nope", "arguments": {}})
            assert unknown.value.code == -32601
            with pytest.raises(MCPError) as bad:
                await c.call_tool("find_tools", {"query": "x", "limit": 0})
            assert bad.value.code == -32602 and "limit" in bad.value.message
            with pytest.raises(MCPError) as long:  # refused before any work: reading it costs time
                await c.call_tool("find_tools", {"query": "a." * 40_000})
            assert long.value.code == -32602 and "80,000 characters" in long.value.message, long.value.message
            codes = []
            for _ in range(8):  # burst 4 at 2/s: the pipeline's rate limit must trip
                try:
                    await c.call_tool("call_tool", {"name": "dyn__add", "arguments": {"a": 1, "b": 1}})
                except MCPError as exc:
                    codes.append(exc.code)
            assert -32029 in codes
        async with Client(f"{base}/mcp", mode="legacy") as c:  # default "both": upstream + meta tools
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"find_tools", "call_tool", "dyn__add"} <= names
            assert "sec__rotate_master_password" not in names  # policy:admin: never the anonymous caller's
        db: Database = app.state.ctx.db

        async def meta_episodes() -> list[Episode]:
            async with db.system() as s:
                rows = (await s.execute(select(Episode))).scalars().all()
            return [r for r in rows if r.data.get("source") == "meta"]

        deadline = asyncio.get_running_loop().time() + 60
        while not {e.outcome for e in await meta_episodes()} >= {"ok", "invalid_arguments", "rate_limited"}:
            assert asyncio.get_running_loop().time() < deadline, "episodes of meta calls were not recorded"
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("kind", ["stdio", "builtin"])
async def test_list_changed_adds_and_removes_tools_from_search(kind: str) -> None:
    server = str(Path(__file__).with_name("dynamic_server.py"))
    entries: list[dict[str, object]] = [{"name": "dyn", "kind": "stdio", "command": sys.executable, "args": [server]}]
    if kind == "builtin":  # in-process: notifications travel over the memory transport
        entries = [{"name": "dyn", "kind": "builtin", "target": "tests.integration.registry.dynamic_server:build"}]
    async with serve_router(entries, embedder="hash") as (base, app):
        async with Client(f"{base}/mcp?expose=search", mode="legacy") as c:
            query = {"query": "frobnicate the blue widgets", "limit": 3}
            assert "dyn__frobnicate_widgets" not in found(await c.call_tool("find_tools", query))
            await c.call_tool("call_tool", {"name": "dyn__grow", "arguments": {
                "name": "frobnicate_widgets", "description": "Frobnicate the blue widgets."}})
            await eventually(lambda: app.state.catalog.get("dyn__frobnicate_widgets") is not None, 60, "list_changed")
            assert found(await c.call_tool("find_tools", query))[0] == "dyn__frobnicate_widgets"
            await c.call_tool("call_tool", {"name": "dyn__shrink", "arguments": {"name": "frobnicate_widgets"}})
            await eventually(lambda: app.state.catalog.get("dyn__frobnicate_widgets") is None, 60, "removal")
            assert "dyn__frobnicate_widgets" not in found(await c.call_tool("find_tools", query))


async def test_a_denied_tool_is_never_returned_over_mcp_and_rest() -> None:
    async with serve_router(ENTRIES, embedder="hash", allow_anonymous=False) as (base, app):
        db: Database = app.state.ctx.db
        await ensure_tenant(db, "acme")
        key, _ = await create_api_key(db, "acme", ["tools:call"])
        admin, _ = await create_api_key(db, "acme", ["tools:call", "policy"])
        query = {"query": "rotate the master password of an account", "limit": 10}
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60)
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy") as c:
            names = found(await c.call_tool("find_tools", query))
            assert names and not any(n.startswith("sec__") for n in names)
            with pytest.raises(MCPError) as denied:
                await c.call_tool("call_tool", {"name": "sec__rotate_master_password", "arguments": {"account": "x"}})
            assert denied.value.code == -32003
        async with httpx.AsyncClient(base_url=base, timeout=60) as h:
            r = await h.get("/v1/tools", params={"q": query["query"], "limit": 10}, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200 and r.json()["no_match"] in (True, False)
            assert not [t for t in r.json()["tools"] if t["server"] == "sec"]
            r = await h.get("/v1/tools", params={"q": query["query"], "limit": 1}, headers={"Authorization": f"Bearer {admin}"})
            assert [t["name"] for t in r.json()["tools"]] == ["sec__rotate_master_password"]
            r = await h.get("/v1/tools", headers={"Authorization": f"Bearer {key}"})
            assert {t["server"] for t in r.json()["tools"]} == {"dyn"}
            r = await h.get("/v1/tools", params={"q": "x", "limit": "0"}, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 400 and "limit" in r.json()["error"]["message"]
            r = await h.get("/v1/tools", params={"q": "x " * 3000}, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 400 and "at most 4,096" in r.json()["error"]["message"], r.text
            r = await h.get("/v1/tools", params={"q": "x"})
            assert r.status_code == 401


async def test_restart_does_not_re_embed_known_tools() -> None:
    counts = []
    for _ in range(2):  # two router lifetimes over the same VSM_HOME
        async with serve_router(ENTRIES, embedder="hash") as (base, app):
            async with httpx.AsyncClient(base_url=base, timeout=60) as h:
                r = await h.get("/v1/tools", params={"q": "add integers"})
                assert r.status_code == 200 and r.json()["tools"][0]["name"] == "dyn__add"
            counts.append(app.state.runtime.tool_search.registry.embedded_count)
    # dyn: add, grow, shrink; sec: rotate_master_password; and the router's own admin__* tools
    n_tools = 4 + len(app.state.catalog.server_tools("admin"))
    assert counts == [n_tools + 1, 1], json.dumps(counts)  # second run embeds only the query
