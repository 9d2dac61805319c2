"""Upstreams managed at run time (issue 27) on a running router: the CLI adds and removes a stdio
server with no restart, connected clients get list_changed, overrides rename / re-describe /
hide / pin, tenants see only their own upstreams, a changed manifest file is reloaded (a bad one
is refused and changes nothing)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from router.runtime import RouterRuntime
from tests.gate_helpers import admin_key, keyed_mcp
from tests.integration.router.conftest import UPSTREAM, router_settings, serve_router, stdio_entry
from tests.polling import eventually
from tests.ports import free_port
from vsm_mcp.context import ServerContext
from vsm_mcp.db import Database
from vsm_mcp.tenants import create_api_key, ensure_tenant

pytestmark = pytest.mark.anyio
CLI = [sys.executable, "-m", "vsm_mcp.cli", "upstreams"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=os.environ.copy())


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Notes:
    """Counts notifications/tools/list_changed a connected client receives."""

    def __init__(self) -> None:
        self.list_changed = 0

    async def __call__(self, message: Any) -> None:
        root = getattr(message, "root", message)
        if getattr(root, "method", "") == "notifications/tools/list_changed":
            self.list_changed += 1


def names_of(result: Any) -> list[str]:
    return [t.name for t in result.tools]


def found(result: Any) -> list[str]:
    assert not result.is_error, result
    return [t["name"] for t in result.structured_content["tools"]]


async def test_cli_add_and_remove_on_a_running_router() -> None:
    async with serve_router([stdio_entry("s")], embedder="hash", upstreams_poll_s=0.25) as (base, app):
        notes = Notes()
        async with Client(f"{base}/mcp", mode="legacy", message_handler=notes) as c:
            assert "added__add" not in names_of(await c.list_tools())
            started = time.monotonic()
            done = await asyncio.to_thread(
                cli, "add", "--name", "added", "--kind", "stdio", "--command", sys.executable,
                "--args", f"{UPSTREAM} --name added",
            )
            assert done.returncode == 0, done.stderr

            async def callable_now() -> bool:
                try:
                    return (await c.call_tool("added__add", {"a": 2, "b": 3})).structured_content == {"result": 5}
                except MCPError:
                    return False

            while not await callable_now():
                assert time.monotonic() - started < 60, "the added upstream never became callable"
                await asyncio.sleep(0.05)
            hits = found(await c.call_tool("find_tools", {"query": "Add two integers", "limit": 10}))
            print(f"\nadd -> callable and searchable in {time.monotonic() - started:.2f}s (CLI process start included)")
            assert "added__add" in hits
            assert "added__add" in names_of(await c.list_tools())
            await eventually(lambda: notes.list_changed >= 1, 30, "list_changed after add")
            async with Client(f"{base}/mcp/added", mode="legacy") as direct:  # its own endpoint exists too
                assert (await direct.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}
            pid = int((await c.call_tool("added__pid", {})).structured_content["result"])  # type: ignore[index]
            assert alive(pid)
            seen = notes.list_changed

            started = time.monotonic()
            done = await asyncio.to_thread(cli, "remove", "added")
            assert done.returncode == 0, done.stderr
            await eventually(lambda: "added" not in app.state.runtime.upstreams, 60, "removal")
            with pytest.raises(MCPError) as gone:
                await c.call_tool("added__add", {"a": 1, "b": 1})
            assert "no upstream 'added'" in gone.value.message
            await eventually(lambda: not alive(pid), 60, "the removed upstream's process to exit")
            print(f"remove -> process gone in {time.monotonic() - started:.2f}s")
            await eventually(lambda: notes.list_changed > seen, 30, "list_changed after remove")
            assert "added__add" not in found(await c.call_tool("find_tools", {"query": "Add two integers", "limit": 10}))
            assert (await c.call_tool("s__add", {"a": 1, "b": 1})).structured_content == {"result": 2}  # untouched

            bad = await asyncio.to_thread(cli, "add", "--name", "x__y", "--kind", "stdio", "--command", sys.executable)
            assert bad.returncode != 0 and "must not contain '__'" in bad.stderr and "Traceback" not in bad.stderr
            assert len(bad.stderr.strip().splitlines()) == 1


async def test_overrides_through_the_admin_tools() -> None:
    async with serve_router([stdio_entry("s")], embedder="hash") as (base, app):
        key = await admin_key(app.state.ctx.db)  # admin__* tools need scope admin: never the anonymous caller's
        async with Client(keyed_mcp(f"{base}/mcp", key), mode="legacy") as c:
            async def admin(op: str, /, **args: Any) -> Any:
                result = await c.call_tool(f"admin__{op}", args)
                assert not result.is_error, result.content
                return result.structured_content

            await admin("tool_override_set", server="s", tool="echo", name="shout", description="Say the words loudly.")
            await admin("tool_override_set", server="s", tool="fail", hidden=True)
            await admin("tool_override_set", server="s", tool="add", pin={"b": 100})
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert "shout" in tools and "s__echo" not in tools and "s__fail" not in tools
            assert tools["shout"].description == "Say the words loudly."
            assert set(tools["s__add"].input_schema["properties"]) == {"a"}
            assert (await c.call_tool("shout", {"text": "hi"})).content[0].text == "hi"  # type: ignore[union-attr]
            assert found(await c.call_tool("find_tools", {"query": "say the words loudly", "limit": 3}))[0] == "shout"
            hits = found(await c.call_tool("find_tools", {"query": "always fails tool error", "limit": 20}))
            assert "s__fail" not in hits
            for name in ("s__fail", "s__echo"):
                with pytest.raises(MCPError):
                    await c.call_tool(name, {"text": "x"} if name == "s__echo" else {})
            assert (await c.call_tool("s__add", {"a": 1})).structured_content == {"result": 101}
            try:  # the caller cannot override a pinned argument: refused, or the pin wins
                assert (await c.call_tool("s__add", {"a": 1, "b": 5})).structured_content == {"result": 101}
            except MCPError as exc:
                assert "b" in exc.message

            bad = await c.call_tool("admin__upstream_add", {"name": "s", "kind": "stdio", "command": sys.executable, "scope": "global"})
            assert bad.is_error and "duplicate upstream name 's'" in bad.content[0].text  # type: ignore[union-attr]
            bad = await c.call_tool("admin__upstream_add", {"name": "z", "kind": "carrier-pigeon", "scope": "global"})
            assert bad.is_error and "unknown kind 'carrier-pigeon'" in bad.content[0].text  # type: ignore[union-attr]
            listing = await admin("upstream_list", scope="global")
            assert listing["upstreams"] == []

            await admin("tool_override_remove", server="s", tool="echo")
            assert "s__echo" in names_of(await c.list_tools())


async def test_tenant_upstreams_are_visible_to_their_tenant_only(http_upstream: str) -> None:
    # A tenant's http upstream passes the SSRF guard: this loopback one only because the allow-list names it.
    allow = [urlsplit(http_upstream).netloc]
    async with serve_router([stdio_entry("s")], embedder="hash", allow_anonymous=False, fetch_allow=allow) as (base, app):
        db: Database = app.state.ctx.db
        keys = {}
        for tenant in ("acme", "beta"):
            await ensure_tenant(db, tenant)
            keys[tenant], _ = await create_api_key(db, tenant, ["admin"])

        def client(tenant: str) -> Client:
            from mcp.client.streamable_http import streamable_http_client
            from mcp.shared._httpx_utils import create_mcp_http_client

            http = create_mcp_http_client(headers={"authorization": f"Bearer {keys[tenant]}"})
            return Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy")

        async with client("acme") as a, client("beta") as b:
            added = await a.call_tool("admin__upstream_add", {"name": "h2", "kind": "http", "url": http_upstream})
            assert not added.is_error, added.content
            other = f"http://127.0.0.1:{free_port()}/mcp"  # loopback, not on the allow-list
            refused = await a.call_tool("admin__upstream_add", {"name": "h3", "kind": "http", "url": other})
            assert refused.is_error and "loopback address; add it to VSM_FETCH_ALLOW" in refused.content[0].text  # type: ignore[union-attr]
            refused = await a.call_tool("admin__upstream_add", {"name": "p", "kind": "stdio", "command": sys.executable})
            assert refused.is_error and "http upstreams only" in refused.content[0].text  # type: ignore[union-attr]
            await a.call_tool("admin__tool_override_set", {"server": "s", "tool": "echo", "description": "acme's echo"})
            for _ in range(600):
                try:
                    if (await a.call_tool("h2__add", {"a": 1, "b": 2})).structured_content == {"result": 3}:
                        break
                except MCPError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the tenant's upstream never became callable")
            assert "h2__add" in names_of(await a.list_tools())
            assert "h2__add" in found(await a.call_tool("find_tools", {"query": "add two integers", "limit": 20}))
            by_server = found(await a.call_tool("find_tools", {"query": "add two integers", "limit": 5, "server": "h2"}))
            assert by_server and all(n.startswith("h2__") for n in by_server)
            echo_a = next(t for t in (await a.list_tools()).tools if t.name == "s__echo")
            echo_b = next(t for t in (await b.list_tools()).tools if t.name == "s__echo")
            assert echo_a.description == "acme's echo" and echo_b.description != "acme's echo"
            assert "h2__add" not in names_of(await b.list_tools())
            assert "h2__add" not in found(await b.call_tool("find_tools", {"query": "add two integers", "limit": 20}))
            with pytest.raises(MCPError):
                await b.call_tool("h2__add", {"a": 1, "b": 2})
            mine = (await b.call_tool("admin__upstream_list", {})).structured_content
            assert mine is not None and mine["upstreams"] == []
            denied = await b.call_tool("admin__upstream_list", {"scope": "global"})
            assert denied.is_error


async def test_manifest_file_is_reloaded_and_a_bad_one_changes_nothing(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"

    def write(entries: list[dict[str, Any]]) -> None:
        manifest.write_text(json.dumps({"upstreams": entries}), encoding="utf-8")
        os.utime(manifest, ns=(time.time_ns(), time.time_ns()))

    write([stdio_entry("one")])
    settings = await anyio.to_thread.run_sync(
        lambda: router_settings(manifests=[str(manifest)], manifest_watch_s=0.1, embedder="hash", upstream_start_wait=30)
    )
    ctx = ServerContext.create(settings)
    await ctx.bus.start()
    try:
        runtime = RouterRuntime(ctx)
        async with anyio.create_task_group() as tg:
            await runtime.start(tg)
            assert runtime.catalog.get("one__add") is not None
            write([stdio_entry("one"), stdio_entry("two")])
            await eventually(lambda: runtime.catalog.get("two__add") is not None, 60, "the new manifest entry")
            before = dict(runtime.upstreams)
            write([stdio_entry("one"), {"name": "bad", "kind": "stdio"}])
            await eventually(lambda: bool(runtime.live.manifest_error), 30, "the bad manifest to be refused")
            assert "bad" in runtime.live.manifest_error and "command" in runtime.live.manifest_error
            assert "\n" not in runtime.live.manifest_error
            assert runtime.upstreams == before and runtime.catalog.get("two__add") is not None
            write([stdio_entry("one")])
            await eventually(lambda: "two" not in runtime.upstreams, 60, "removal by manifest")
            assert runtime.live.manifest_error == ""
            await runtime.aclose()
            tg.cancel_scope.cancel()
    finally:
        await ctx.aclose()


async def test_rest_routes_are_admin_tool_calls() -> None:
    import httpx

    async with serve_router([stdio_entry("s")], embedder="hash", allow_anonymous=False) as (base, app):
        db: Database = app.state.ctx.db
        await ensure_tenant(db, "acme")
        admin_key, _ = await create_api_key(db, "acme", ["admin"])
        user_key, _ = await create_api_key(db, "acme", ["tools:call"])
        admin = {"authorization": f"Bearer {admin_key}"}
        async with httpx.AsyncClient(base_url=base, timeout=60) as h:
            r = await h.post("/v1/upstreams", json={"name": "w", "kind": "http", "url": "https://"}, headers=admin)
            assert r.status_code == 400 and "url" in r.json()["error"]["message"]
            r = await h.get("/v1/upstreams", headers={"authorization": f"Bearer {user_key}"})
            assert r.status_code == 403
            r = await h.put("/v1/upstream-secrets/TOKEN", json={"value": "hunter2"}, headers=admin)
            assert r.status_code == 200 and "hunter2" not in r.text
            r = await h.put("/v1/tool-overrides/s/echo", json={"description": "Echo for acme."}, headers=admin)
            assert r.status_code == 200, r.text
            r = await h.get("/v1/upstreams", headers=admin)
            assert r.status_code == 200 and r.json()["secrets"] == ["TOKEN"] and "hunter2" not in r.text
            assert r.json()["overrides"][0]["description"] == "Echo for acme."
            r = await h.delete("/v1/upstreams/nope", headers=admin)
            assert r.status_code == 400 and "no upstream 'nope'" in r.json()["error"]["message"]


async def test_closing_waits_for_a_registry_read_in_flight_and_starts_none_after() -> None:
    """Cancelling the runtime's task group used to cut the poll's database read short (the pool
    logged the cancelled rollback at the end of CLI runs); the runtime now closes the follower
    first, and that waits for the read."""
    from router.local import running_router

    settings = await asyncio.to_thread(router_settings, embedder="hash", upstreams_poll_s=0.001)
    async with running_router(settings, []) as (runtime, _principal):
        live = runtime.live
        events: list[str] = []
        gate = anyio.Event()
        read = live.store.fingerprint

        async def gated() -> tuple[int, int]:
            events.append("read")
            await gate.wait()
            out = await read()
            events.append("read done")
            return out

        live.store.fingerprint = gated  # type: ignore[method-assign]
        await eventually(lambda: events == ["read"], 30, "a poll's read to start")

        async def close() -> None:
            await live.aclose()
            events.append("closed")

        async with anyio.create_task_group() as tg:
            tg.start_soon(close)
            await anyio.sleep(0.1)
            gate.set()
        await anyio.sleep(0.05)
    assert events == ["read", "read done", "closed"]  # waited for, not cut short; no read after
