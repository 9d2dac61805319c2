"""A whole router app (storage, policy and llm from manifests/default.yaml) on real uvicorn,
with API keys of two tenants."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from router.app import create_app
from router.upstreams.manifest import DEFAULT_MANIFEST, parse_manifest
from tests.asgi_server import serve_asgi as serve
from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.context import ServerContext
from vsm_mcp.keys import create_key
from vsm_mcp.tenants import create_tenant


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Gateway:
    url: str
    http: httpx.AsyncClient
    ctx: ServerContext
    keys: dict[str, str]  # name -> "Bearer vsm_…"
    tenants: dict[str, str]  # name -> id
    app: Any

    async def call(self, tool: str, as_key: str | None = None, **arguments: Any) -> httpx.Response:
        headers = {"authorization": self.keys[as_key]} if as_key else {}
        return await self.http.post(f"/v1/tools/{tool}/call", json={"arguments": arguments}, headers=headers)


def manifest(tmp_path: Path, names: tuple[str, ...] = ("storage", "policy", "llm")) -> list[dict[str, Any]]:
    entries = [u for u in yaml.safe_load(Path(DEFAULT_MANIFEST).read_text())["upstreams"] if u["name"] in names]
    assert {u["name"] for u in entries} == set(names)
    return entries


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    entries = manifest(tmp_path)
    settings = load_settings(home=tmp_path / ".vsm", storage_sweep_interval_s=0, edge_rate_per_s=1000,
                             edge_rate_burst=1000)
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    ctx = ServerContext.create(settings)
    tenants = {name: (await create_tenant(ctx.db, name)).id for name in ("acme", "globex")}
    scopes = {
        "acme_admin": ("acme", ["storage:*", "policy:*", "tools:call"]),
        "acme_read": ("acme", ["storage:read"]),
        "acme_llm": ("acme", ["llm:call"]),
        "globex": ("globex", ["storage:*", "llm:*"]),
    }
    keys = {name: "Bearer " + (await create_key(ctx.db, t, s))[0] for name, (t, s) in scopes.items()}
    app = create_app(settings, ctx, specs=parse_manifest({"upstreams": entries}, "m.yaml"))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        yield Gateway(url, http, ctx, keys, tenants, app)
