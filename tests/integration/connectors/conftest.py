"""The cms server with content, search and storage behind the real router runtime and the
durable spine (DBOS on SQLite), and a local product API per connector type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from router.local import running_router
from router.runtime import RouterRuntime
from router.upstreams.manifest import DEFAULT_MANIFEST, parse_manifest
from tests.integration.content.conftest import content_settings, prepare_database
from vsm_mcp.auth import Principal
from vsm_mcp.config import Settings

SERVERS = ("content", "search", "storage", "cms", "drive")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ToolFailed(Exception):
    pass


@dataclass
class Stack:
    settings: Settings
    runtime: RouterRuntime

    async def call(self, tool: str, tenant: str = "t-conn", **args: Any) -> Any:
        principal = Principal(tenant, frozenset(["*"]), "")
        res = await self.runtime.dispatcher.call_tool(principal, tool, args, source="test")
        if res.is_error:
            raise ToolFailed(" ".join(getattr(c, "text", "") for c in res.content))
        return res.structured_content

    async def sync(self, server: str, name: str, tenant: str = "t-conn", **args: Any) -> dict[str, Any]:
        """Run a sync to its end; the connector's status after it."""
        st = await self.call(f"{server}__connector_sync", tenant, name=name, wait=True, **args)
        while st.get("state") == "running":
            await anyio.sleep(0.1)
            st = await self.call(f"{server}__connector_status", tenant, name=name)
        return dict(await self.call(f"{server}__connector_status", tenant, name=name))


def entries() -> list[dict[str, Any]]:
    ups = [u for u in yaml.safe_load(Path(DEFAULT_MANIFEST).read_text())["upstreams"] if u["name"] in SERVERS]
    return ups


def connector_settings(tmp_path: Path, **over: Any) -> Settings:
    return content_settings(tmp_path, **({"connector_backoff_s": 0.01, "connector_page_size": 100} | over))


async def open_stack(settings: Settings, durable: bool = True) -> AsyncIterator[Stack]:
    await prepare_database(settings)
    specs = parse_manifest({"upstreams": entries()}, "connectors.yaml")
    kw: dict[str, Any] = {"durable_role": "test", "durable_queues": ["connectors"]} if durable else {}
    async with running_router(settings, specs, **kw) as (runtime, _principal):
        yield Stack(settings, runtime)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async for s in open_stack(connector_settings(tmp_path)):
        yield s
