"""The storage MCP server through the real SDK client (in-memory transport), tenants from _meta."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest
from mcp import Client

from servers.storage.server import build
from tests.mcp_calls import call, error_text
from vsm_mcp.context import TENANT_META_KEY, ServerContext
from vsm_mcp.storage import StorageService

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(storage_env: tuple[StorageService, str, str]) -> AsyncIterator[tuple[Client, str, str]]:
    svc, a, b = storage_env
    ctx = ServerContext(settings=svc.settings, db=svc.db, bus=None)  # type: ignore[arg-type]
    ctx.extras["storage.service"] = svc
    async with Client(build(ctx)) as c:
        yield c, a, b


@pytest.mark.parametrize("backend_url", ["memory://"], indirect=False)
async def test_tools_round_trip_and_annotations(client: tuple[Client, str, str]) -> None:
    c, a, _ = client
    tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) >= {"storage_put", "storage_get", "storage_delete", "storage_list", "storage_stat",
                          "bucket_create", "bucket_set_policy", "bucket_usage", "bucket_sweep"}
    assert tools["storage_get"].annotations.read_only_hint is True
    assert tools["storage_delete"].annotations.destructive_hint is True
    assert tools["bucket_create"].annotations.idempotent_hint is False
    await call(c, a, "bucket_create", name="docs", quota_objects=10, versioning=True, keep_versions=1)
    put = await call(c, a, "storage_put", bucket="docs", key="notes/a.txt", text="héllo")
    assert put["size"] == len("héllo".encode())
    await call(c, a, "storage_put", bucket="docs", key="bin", base64=base64.b64encode(b"\xff\x00").decode())
    assert (await call(c, a, "storage_get", bucket="docs", key="notes/a.txt"))["text"] == "héllo"
    assert (await call(c, a, "storage_get", bucket="docs", key="bin"))["base64"] == "/wA="
    assert (await call(c, a, "storage_get", bucket="docs", key="notes/a.txt", start=1, end=3))["text"] == "é"
    listed = await call(c, a, "storage_list", bucket="docs", limit=1)
    assert [o["key"] for o in listed["objects"]] == ["bin"] and listed["next_after"] == "bin"
    await call(c, a, "storage_put", bucket="docs", key="notes/a.txt", text="v2")
    stat = await call(c, a, "storage_stat", bucket="docs", key="notes/a.txt", versions=True)
    assert len(stat["versions"]) == 1
    usage = await call(c, a, "bucket_usage", name="docs")
    assert usage["usage"]["objects"] == 2 and usage["quota_objects"] == 10
    pol = await call(c, a, "bucket_set_policy", name="docs", policy={"expire_days": 30})
    assert pol["expire_days"] == 30
    assert (await call(c, a, "bucket_sweep", name="docs"))["expired"] == 0
    assert (await call(c, a, "storage_delete", bucket="docs", key="bin"))["deleted"] is True
    res = await c.read_resource("storage://docs/notes/a.txt", meta={TENANT_META_KEY: a})
    assert json.loads(res.model_dump_json())["contents"][0]["text"] == "v2"


@pytest.mark.parametrize("backend_url", ["memory://"], indirect=False)
async def test_errors_are_tool_results_naming_the_problem(client: tuple[Client, str, str]) -> None:
    c, a, b = client
    assert (await error_text(c, a, "storage_get", bucket="nope", key="k")).count("not_found")
    assert "invalid_arguments" in await error_text(c, a, "storage_put", bucket="x", key="../etc", text="x")
    assert "exactly one" in await error_text(c, a, "storage_put", bucket="x", key="k")
    assert "invalid_arguments" in await error_text(c, a, "storage_put", bucket="x", key="k", base64="%%%")
    await call(c, a, "bucket_create", name="q", quota_bytes=4)
    assert "quota_exceeded" in await error_text(c, a, "storage_put", bucket="q", key="k", text="too long")
    assert "conflict" in await error_text(c, a, "bucket_create", name="q")
    assert "quota_bytes" in await error_text(c, a, "bucket_set_policy", name="q", policy={"quota_bytes": -5})
    # tenant b sees nothing of tenant a
    await call(c, a, "storage_put", bucket="priv", key="k", text="a's")
    assert "not_found" in await error_text(c, b, "storage_get", bucket="priv", key="k")
    assert (await call(c, b, "bucket_usage"))["buckets"] == []
