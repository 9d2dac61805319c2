"""Through the router: the storage tools via /mcp (real SDK client over streamable HTTP, real
uvicorn) and via ``vsm-mcp stdio`` (subprocess), mounted from manifests/default.yaml's entry."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from mcp import Client, StdioServerParameters

from router.app import create_app
from router.upstreams.manifest import DEFAULT_MANIFEST, parse_manifest
from tests.asgi_server import serve_asgi as serve
from tests.gate_helpers import admin_key, keyed_mcp
from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.context import ServerContext

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]


def storage_manifest(tmp_path: Path) -> Path:
    """A manifest holding only the storage entry of the packaged default.yaml."""
    entries = [u for u in yaml.safe_load(Path(DEFAULT_MANIFEST).read_text())["upstreams"] if u["name"] == "storage"]
    assert len(entries) == 1, "manifests/default.yaml must mount storage"
    path = tmp_path / "storage.yaml"
    path.write_text(yaml.safe_dump({"upstreams": entries}))
    return path


async def exercise(client: Client) -> None:
    """The same walk over the public (aggregated) tool names, whatever the transport."""
    names = {t.name for t in (await client.list_tools()).tools}
    assert {"storage__storage_put", "storage__storage_get", "storage__bucket_create"} <= names

    async def call(tool: str, **args: Any) -> dict[str, Any]:
        res = await client.call_tool(f"storage__{tool}", args)
        assert not res.is_error, res.content
        assert res.structured_content is not None
        return res.structured_content

    await call("bucket_create", name="notes", quota_objects=5)
    await call("storage_put", bucket="notes", key="day/1.md", text="# one")
    assert (await call("storage_get", bucket="notes", key="day/1.md"))["text"] == "# one"
    await call("storage_put", bucket="notes", key="day/1.md", text="# one, edited")
    assert (await call("storage_get", bucket="notes", key="day/1.md"))["text"] == "# one, edited"  # not cached
    assert [o["key"] for o in (await call("storage_list", bucket="notes"))["objects"]] == ["day/1.md"]
    assert (await call("bucket_usage", name="notes"))["usage"]["objects"] == 1
    bad = await client.call_tool("storage__storage_put", {"bucket": "notes", "key": "../x", "text": "x"})
    assert bad.is_error and "invalid" in json.dumps(bad.model_dump(mode="json"))
    assert (await call("storage_delete", bucket="notes", key="day/1.md"))["deleted"] is True


async def test_tools_via_mcp_endpoint(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / ".vsm", manifests=[str(storage_manifest(tmp_path))],
                             storage_sweep_interval_s=0)
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    specs = parse_manifest(yaml.safe_load(storage_manifest(tmp_path).read_text()), "storage.yaml")
    ctx = ServerContext.create(settings)
    key = await admin_key(ctx.db, scopes=("storage:*",))  # bucket_create is storage:admin: not for anonymous callers
    async with serve(create_app(settings, ctx, specs=specs)) as url:
        async with Client(keyed_mcp(f"{url}/mcp", key), mode="legacy") as client:  # the pre-2026 protocol
            await exercise(client)
            await client.call_tool("storage__storage_put", {"bucket": "shared", "key": "via-mcp", "text": "hi"})
        # the same objects over the app's HTTP edge, as the same tenant
        async with httpx.AsyncClient(base_url=url, timeout=60, headers={"authorization": f"Bearer {key}"}) as http:
            assert (await http.get("/v1/storage/shared/via-mcp")).text == "hi"
            body = os.urandom(2 * 1024 * 1024)
            assert (await http.put("/v1/storage/shared/big", content=body)).status_code == 201
            got = await http.get("/v1/storage/shared/big", headers={"range": "bytes=1048576-"})
            assert got.status_code == 206 and got.content == body[1048576:]


async def test_tools_via_vsm_mcp_stdio(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSM_")}
    env |= {"VSM_HOME": str(tmp_path / ".vsm"), "VSM_MANIFESTS": str(storage_manifest(tmp_path)),
            "VSM_STORAGE_SWEEP_INTERVAL_S": "0", "PYTHONPATH": str(ROOT)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "vsm_mcp.cli", "stdio"], env=env,
                                   cwd=str(tmp_path))
    async with Client(params, mode="legacy") as client:
        await exercise(client)


async def test_runs_alone_over_stdio(tmp_path: Path) -> None:
    """``vsm-mcp server storage`` (``python -m servers.storage`` runs the same standalone.main)."""
    argv = ["-m", "vsm_mcp.cli", "server", "storage"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSM_")}
    env |= {"VSM_HOME": str(tmp_path / ".vsm"), "VSM_STORAGE_SWEEP_INTERVAL_S": "0", "PYTHONPATH": str(ROOT)}
    params = StdioServerParameters(command=sys.executable, args=[*argv, "--transport", "stdio"], env=env,
                                   cwd=str(tmp_path))
    async with Client(params) as client:  # alone: original tool names, the default tenant
        res = await client.call_tool("storage_put", {"bucket": "solo", "key": "k", "text": "alone"})
        assert not res.is_error, res.content
        got = await client.call_tool("storage_get", {"bucket": "solo", "key": "k"})
        assert got.structured_content is not None and got.structured_content["text"] == "alone"
    assert (tmp_path / ".vsm" / "storage").is_dir()  # default VSM_STORAGE_URL = file://<home>/storage
