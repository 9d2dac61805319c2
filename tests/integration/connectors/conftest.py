"""The cms server with content, search and storage behind the real router runtime and the
durable spine (DBOS on SQLite), and a local product API per connector type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from router.runtime import RouterRuntime
from tests.integration.content.conftest import content_settings, structured
from tests.integration.content.conftest import open_stack as content_stack
from vsm_mcp.auth import Principal
from vsm_mcp.config import Settings

SERVERS = ("content", "search", "storage", "cms", "drive")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Stack:
    settings: Settings
    runtime: RouterRuntime

    async def call(self, tool: str, tenant: str = "t-conn", **args: Any) -> Any:
        principal = Principal(tenant, frozenset(["*"]), "")
        return structured(await self.runtime.dispatcher.call_tool(principal, tool, args, source="test"))

    async def sync(self, server: str, name: str, tenant: str = "t-conn", **args: Any) -> dict[str, Any]:
        """Run a sync to its end; the connector's status after it."""
        st = await self.call(f"{server}__connector_sync", tenant, name=name, wait=True, **args)
        while st.get("state") == "running":
            await anyio.sleep(0.1)
            st = await self.call(f"{server}__connector_status", tenant, name=name)
        return dict(await self.call(f"{server}__connector_status", tenant, name=name))


def connector_settings(tmp_path: Path, **over: Any) -> Settings:
    return content_settings(tmp_path, **({"connector_backoff_s": 0.01, "connector_page_size": 100} | over))


async def open_stack(settings: Settings, durable: bool = True) -> AsyncIterator[Stack]:
    kw: dict[str, Any] = {"durable_role": "test", "durable_queues": ["connectors"]} if durable else {}
    async for stack in content_stack(settings, SERVERS, Stack, **kw):
        yield stack


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async for s in open_stack(connector_settings(tmp_path)):
        yield s
