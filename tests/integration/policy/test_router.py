"""End to end through the router: a tenant policy denying ``storage_delete`` outside working
hours (time injected) blocks that call via ``/mcp`` (real SDK client, streamable HTTP, real
uvicorn) and allows the others; updating the policy through the policy server's own tool
takes effect without a restart. Both servers are mounted from manifests/default.yaml."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client
from mcp.shared.exceptions import MCPError

from router.app import create_app
from router.upstreams.manifest import DEFAULT_MANIFEST, parse_manifest
from tests.asgi_server import serve_asgi as serve
from tests.gate_helpers import admin_key, keyed_mcp
from tests.integration.policy.conftest import Clock
from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import PolicyDenied
from vsm_mcp.policy.service import CLOCK_KEY

pytestmark = pytest.mark.anyio

POLICY = """
policy "hours"
default allow
deny after_hours "storage_delete is only allowed 09:00-{end}:00 UTC"
  when tool.name == "storage_delete" and (context.hour < 9 or context.hour >= {end})
"""
EVENING = 1_764_190_800.0  # 2025-11-26T21:00:00Z
MORNING = 1_764_151_200.0  # 2025-11-26T10:00:00Z


def manifest(tmp_path: Path) -> Path:
    """The storage and policy entries of the packaged default.yaml."""
    wanted = {"storage", "policy"}
    entries = [u for u in yaml.safe_load(Path(DEFAULT_MANIFEST).read_text())["upstreams"] if u["name"] in wanted]
    assert {u["name"] for u in entries} == wanted, "manifests/default.yaml must mount storage and policy"
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"upstreams": entries}))
    return path


async def ok(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    res = await client.call_tool(tool, args)
    assert not res.is_error, res.content
    assert res.structured_content is not None
    return res.structured_content


async def delete_outcome(client: Client, key: str) -> str:
    """"deleted", or the policy denial message (a JSON-RPC error, not a tool result)."""
    try:
        res = await client.call_tool("storage__storage_delete", {"bucket": "docs", "key": key})
    except MCPError as exc:
        assert exc.code == PolicyDenied.code and exc.data["type"] == "policy_denied", exc.error
        assert (exc.data["policy"], exc.data["rule"]) == ("hours", "after_hours")
        return exc.message
    assert not res.is_error, res.content
    return "deleted"


async def test_working_hours_policy_via_mcp_and_update_without_restart(tmp_path: Path) -> None:
    path = manifest(tmp_path)
    settings = load_settings(home=tmp_path / ".vsm", manifests=[str(path)], storage_sweep_interval_s=0)
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    ctx = ServerContext.create(settings)
    clock = Clock(EVENING)
    ctx.extras[CLOCK_KEY] = clock
    specs = parse_manifest(yaml.safe_load(path.read_text()), "m.yaml")
    key = await admin_key(ctx.db, scopes=("storage:*", "policy"))  # policies and buckets are admin work
    async with serve(create_app(settings, ctx, specs=specs)) as url:
        async with Client(keyed_mcp(f"{url}/mcp", key), mode="legacy") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"policy__policy_put", "policy__policy_test", "storage__storage_delete"} <= names
            await ok(client, "storage__bucket_create", name="docs")
            for key in ("a", "b", "c"):
                await ok(client, "storage__storage_put", bucket="docs", key=key, text=key)
            assert await delete_outcome(client, "a") == "deleted"  # no policy yet

            put = await ok(client, "policy__policy_put", name="hours", source=POLICY.format(end=17))
            assert put["version"] == 1
            denied = await delete_outcome(client, "b")
            assert denied == (
                "denied by policy 'hours' rule 'after_hours': storage_delete is only allowed 09:00-17:00 UTC"
            )
            # Other calls pass, at the same hour.
            assert (await ok(client, "storage__storage_get", bucket="docs", key="b"))["text"] == "b"
            await ok(client, "storage__storage_put", bucket="docs", key="d", text="d")
            # Inside working hours the same call is allowed.
            clock.now = MORNING
            assert await delete_outcome(client, "b") == "deleted"
            clock.now = EVENING
            assert (await delete_outcome(client, "c")).startswith("denied by policy 'hours'")

            # Update the policy (a longer day) through the policy server: applies at once.
            assert (await ok(client, "policy__policy_put", name="hours", source=POLICY.format(end=23)))["version"] == 2
            assert await delete_outcome(client, "c") == "deleted"
            await ok(client, "policy__policy_delete", name="hours")
            clock.now = MORNING - 8 * 3600  # 02:00
            assert await delete_outcome(client, "d") == "deleted"
