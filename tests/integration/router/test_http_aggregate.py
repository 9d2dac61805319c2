"""The aggregate /mcp and /mcp/<server> over real HTTP with a stdio and an HTTP upstream,
driven by the real mcp SDK client."""

from __future__ import annotations

import json

import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.integration.router.conftest import serve_router, stdio_entry

pytestmark = pytest.mark.anyio
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


async def test_aggregate_proxy_and_protocol_errors(http_upstream: str) -> None:
    entries = [stdio_entry("s"), {"name": "h", "kind": "http", "url": http_upstream}]
    async with serve_router(entries, max_body_bytes=64 * 1024) as (base, app):
        async with Client(f"{base}/mcp", mode="legacy") as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"s__add", "h__add", "s__echo", "h__progress"} <= names
            assert (await c.call_tool("s__add", {"a": 1, "b": 2})).structured_content == {"result": 3}
            assert (await c.call_tool("h__add", {"a": 2, "b": 2})).structured_content == {"result": 4}
            assert (await c.call_tool("h__fail", {})).is_error
            steps: list[float] = []

            async def on_progress(p: float, total: float | None, msg: str | None) -> None:
                steps.append(p)

            done = await c.call_tool("h__progress", {}, progress_callback=on_progress)
            assert done.content[0].text == "finished" and steps == [1, 2, 3]  # type: ignore[union-attr]
            with pytest.raises(MCPError) as unknown:
                await c.call_tool("s__nope", {})
            assert unknown.value.code == -32601
            with pytest.raises(MCPError) as invalid:
                await c.call_tool("h__add", {"a": "x", "b": 1})
            assert invalid.value.code == -32602 and "'a'" in invalid.value.message
        assert app.state.router_fastpath.served > 0  # plain calls took the fast lane

        # /mcp/<server>: original names, the upstream's tools only, progress relayed.
        async with Client(f"{base}/mcp/h", mode="legacy") as c:
            assert {t.name for t in (await c.list_tools()).tools} >= {"add", "echo", "progress"}
            assert (await c.call_tool("add", {"a": 5, "b": 5})).structured_content == {"result": 10}
            steps.clear()
            await c.call_tool("progress", {}, progress_callback=on_progress)
            assert steps == [1, 2, 3]

        async with httpx.AsyncClient(base_url=base, timeout=30) as h:
            init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
            r = await h.post("/mcp", json=init, headers=ACCEPT)
            sid = r.headers["mcp-session-id"]
            hdrs = {**ACCEPT, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"}
            await h.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=hdrs)
            r = await h.post("/mcp", content=b'{"jsonrpc": "2.0", "id": 2, "method": ', headers=hdrs)
            assert r.json()["error"]["code"] == -32700
            r = await h.post("/mcp", content=b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":7}', headers=hdrs)
            assert "error" in _last_json(r)
            r = await h.post("/mcp", json={"jsonrpc": "2.0", "id": 4, "method": "no/such"}, headers=hdrs)
            assert _last_json(r)["error"]["code"] == -32601
            big = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                   "params": {"name": "s__echo", "arguments": {"text": "x" * 100_000}}}
            r = await h.post("/mcp", json=big, headers=hdrs)
            assert r.status_code == 413 and "error" in r.json()
            r = await h.post("/mcp", json=init, headers={**ACCEPT, "host": "evil.example:80"})
            assert r.status_code == 403 and r.json()["error"]["code"] == -32003
            r = await h.post("/mcp", json=init, headers={**ACCEPT, "origin": "https://evil.example"})
            assert r.status_code == 403
            r = await h.post("/mcp/nosuch", json=init, headers=ACCEPT)
            assert r.status_code == 404 and r.json()["error"]["code"] == -32601
            ready = (await h.get("/readyz")).json()
            assert ready["checks"]["upstreams"]["s"]["state"] == "ready"
            assert ready["checks"]["upstreams"]["h"]["state"] == "ready"


def _last_json(r: httpx.Response) -> dict:  # type: ignore[type-arg]
    """A JSON body, or the last `data:` event of an SSE body."""
    if r.headers.get("content-type", "").startswith("application/json"):
        return r.json()  # type: ignore[no-any-return]
    data = [line[5:].strip() for line in r.text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1])  # type: ignore[no-any-return]


async def test_api_keys_required_off_loopback_rules(http_upstream: str) -> None:
    from vsm_mcp.tenants import create_api_key, create_tenant

    async with serve_router([{"name": "h", "kind": "http", "url": http_upstream}], allow_anonymous=False) as (base, app):
        db = app.state.ctx.db
        await create_tenant(db, "acme")
        key, _ = await create_api_key(db, "acme", ["tools:call"])
        async with httpx.AsyncClient(base_url=base, timeout=30) as h:
            r = await h.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=ACCEPT)
            assert r.status_code == 401 and r.json()["error"]["code"] == -32001
        auth = httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
        from mcp.client.streamable_http import streamable_http_client

        async with Client(streamable_http_client(f"{base}/mcp", http_client=_httpx2(key)), mode="legacy") as c:
            r = await c.call_tool("h__whoami", {})
            tenant = (await _tenant_id(db, "acme"))
            assert r.content[0].text == tenant  # type: ignore[union-attr]
        await auth.aclose()


def _httpx2(key: str):  # type: ignore[no-untyped-def]
    from mcp.shared._httpx_utils import create_mcp_http_client

    return create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})


async def _tenant_id(db, name: str) -> str:  # type: ignore[no-untyped-def]
    from vsm_mcp.tenants import get_tenant

    return (await get_tenant(db, name)).id


async def test_list_changed_refreshes_catalog_and_reaches_clients() -> None:
    from tests.polling import eventually

    seen: list[str] = []

    async def on_message(message: object) -> None:
        method = getattr(message, "method", "")
        if method:
            seen.append(method)

    async with serve_router([stdio_entry("s")]) as (base, app):
        async with Client(f"{base}/mcp", mode="legacy", message_handler=on_message) as c:
            await c.list_tools()
            assert (await c.call_tool("s__grow", {"name": "sprout"})).content[0].text == "grown"  # type: ignore[union-attr]
            await eventually(lambda: app.state.catalog.get("s__sprout") is not None, 30, "the catalog refresh")
            await eventually(lambda: "notifications/tools/list_changed" in seen, 30, "list_changed to the client")
            assert "s__sprout" in {t.name for t in (await c.list_tools()).tools}
            assert (await c.call_tool("s__sprout", {})).content[0].text == "sprout"  # type: ignore[union-attr]


async def test_legacy_sse_transport_serves_the_aggregate() -> None:
    from mcp.client.sse import sse_client

    async with serve_router([stdio_entry("s")]) as (base, _app):
        async with Client(sse_client(f"{base}/sse"), mode="legacy") as c:
            assert "s__add" in {t.name for t in (await c.list_tools()).tools}
            assert (await c.call_tool("s__add", {"a": 1, "b": 2})).structured_content == {"result": 3}


async def test_cancellation_stops_a_call_in_flight(http_upstream: str) -> None:
    import anyio

    from tests.polling import eventually

    async with serve_router([{"name": "h", "kind": "http", "url": http_upstream}]) as (base, app):
        async with httpx.AsyncClient(base_url=base, timeout=60) as h:
            init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
            r = await h.post("/mcp", json=init, headers=ACCEPT)
            hdrs = {**ACCEPT, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
            await h.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=hdrs)
            call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "h__slow", "arguments": {"seconds": 60}}}
            answer: dict = {}  # type: ignore[type-arg]

            async def slow() -> None:
                answer.update(_last_json(await h.post("/mcp", json=call, headers=hdrs)))

            with anyio.fail_after(40):  # far below the 60 s the tool would take
                async with anyio.create_task_group() as tg:
                    tg.start_soon(slow)
                    await eventually(lambda: app.state.router_fastpath._inflight, 30, "the call to be in flight")
                    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}
                    r = await h.post("/mcp", json=cancel, headers=hdrs)
                    assert r.status_code == 202
            assert answer["error"]["code"] == -32800


async def test_http_upstream_falls_back_to_legacy_sse(sse_upstream: str) -> None:
    async with serve_router([{"name": "old", "kind": "http", "url": sse_upstream}]) as (base, app):
        assert app.state.upstreams["old"].state == "ready"
        async with Client(f"{base}/mcp", mode="legacy") as c:
            assert (await c.call_tool("old__add", {"a": 3, "b": 4})).structured_content == {"result": 7}


async def test_expose_modes(http_upstream: str) -> None:
    async with serve_router([{"name": "h", "kind": "http", "url": http_upstream}]) as (base, app):
        local = set(app.state.aggregate.local_tools)
        async with Client(f"{base}/mcp?expose=all", mode="legacy") as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert "h__add" in names and not (names & local)
        async with Client(f"{base}/mcp?expose=search", mode="legacy") as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert names == local or (not local and "h__add" in names)
        async with Client(f"{base}/mcp?expose=both", mode="legacy") as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert "h__add" in names and local <= names


async def test_prompts_and_resources_are_aggregated(http_upstream: str) -> None:
    entries = [stdio_entry("s"), {"name": "h", "kind": "http", "url": http_upstream}]
    async with serve_router(entries) as (base, _app):
        async with Client(f"{base}/mcp", mode="legacy") as c:
            prompts = {p.name for p in (await c.list_prompts()).prompts}
            assert {"s__greet", "h__greet"} <= prompts
            got = await c.get_prompt("s__greet", {"who": "ann"})
            assert "Hello ann, from s" in got.messages[0].content.text  # type: ignore[union-attr]
            uris = {str(r.uri) for r in (await c.list_resources()).resources}
            assert {"test://s/info", "test://h/info"} <= uris  # URIs kept as they are
            read = await c.read_resource("test://h/info")
            assert read.contents[0].text == "info of h"  # type: ignore[union-attr]
            templated = await c.read_resource("test://s/items/42")
            assert templated.contents[0].text == "s item 42"  # type: ignore[union-attr]
            with pytest.raises(MCPError):
                await c.read_resource("test://nobody/x")
