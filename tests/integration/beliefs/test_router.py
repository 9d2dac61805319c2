"""Through the router (in-process app, real uvicorn, SDK client over streamable HTTP): the
beliefs entry of manifests/default.yaml, capability grants, and tenant isolation by API key."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from router.app import create_app
from router.upstreams.manifest import DEFAULT_MANIFEST, parse_manifest
from tests.asgi_server import serve_asgi as serve
from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database
from vsm_mcp.tenants import create_api_key, create_tenant

pytestmark = pytest.mark.anyio


def beliefs_entries() -> list[dict[str, Any]]:
    """The beliefs entry of the packaged default.yaml."""
    upstreams = yaml.safe_load(Path(DEFAULT_MANIFEST).read_text())["upstreams"]
    entries = [u for u in upstreams if u["name"] == "beliefs"]
    assert len(entries) == 1, "manifests/default.yaml must mount beliefs"
    return entries


async def test_grants_and_tenants_through_the_router(tmp_path: Path) -> None:
    entries = beliefs_entries()
    settings = load_settings(home=tmp_path / ".vsm", embedder="hash")
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    db = Database(settings)
    try:
        for name in ("alpha", "beta"):
            await create_tenant(db, name)
        writer, _ = await create_api_key(db, "alpha", ["beliefs"])
        reader, _ = await create_api_key(db, "alpha", ["beliefs:read"])
        other, _ = await create_api_key(db, "beta", ["beliefs:*"])
    finally:
        await db.aclose()

    app = create_app(settings, specs=parse_manifest({"upstreams": entries}, "beliefs.yaml"))
    async with serve(app) as url:

        async def call(api_key: str, tool: str, **args: Any) -> Any:
            http = create_mcp_http_client(headers={"authorization": f"Bearer {api_key}"})
            async with Client(streamable_http_client(f"{url}/mcp", http_client=http), mode="legacy") as c:
                try:
                    return await c.call_tool(f"beliefs__{tool}", args)
                except MCPError as exc:  # a JSON-RPC error (e.g. a denied grant), returned for asserting
                    return exc

        ok = await call(writer, "belief_assert", key="plan/next", value="ship", confidence=0.7)
        assert not ok.is_error, ok.content
        got = await call(reader, "belief_get", key="plan/next")
        assert not got.is_error and got.structured_content["belief"]["value"] == "ship"
        denied = await call(reader, "belief_assert", key="plan/next", value="nope")
        assert isinstance(denied, MCPError) and "beliefs:write" in str(denied)
        elsewhere = await call(other, "belief_get", key="plan/next")
        assert not elsewhere.is_error and elsewhere.structured_content["found"] is False
