"""Belief-server nodes in one process: each has its own home (SQLite database, node id) and
they share one in-process bus, like replicas sharing RabbitMQ."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from servers.beliefs.server import build, service_of
from servers.beliefs.service import BeliefService
from tests.integration.databases import copy_migrated
from tests.mcp_calls import connected
from vsm_mcp.bus import Bus, MemoryBus
from vsm_mcp.config import load_settings
from vsm_mcp.context import TENANT_META_KEY, ServerContext


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Node:
    """One running belief server with an MCP client connected in-process."""

    def __init__(self, ctx: ServerContext, client: Client) -> None:
        self.ctx = ctx
        self.client = client

    @property
    def service(self) -> BeliefService:
        return service_of(self.ctx)

    async def call(self, tool: str, tenant: str | None = None, **args: Any) -> dict[str, Any]:
        meta = {TENANT_META_KEY: tenant} if tenant else None
        res = await self.client.call_tool(tool, args, meta=meta)  # type: ignore[arg-type]
        if res.is_error:
            raise ToolFailed(res.content[0].text)  # type: ignore[union-attr]
        assert res.structured_content is not None
        out = res.structured_content.get("result", res.structured_content)
        assert isinstance(out, dict)
        return out


class ToolFailed(Exception):
    pass


NodeFactory = Callable[..., Any]


@pytest.fixture
def make_node(tmp_path: Path, migrated_sqlite: Path) -> Callable[..., Any]:
    """``async with make_node("a", bus) as node`` — a fresh migrated database per home."""

    @asynccontextmanager
    async def factory(name: str, bus: Bus, db_url: str | None = None, **settings: Any) -> AsyncIterator[Node]:
        home = tmp_path / name
        opts: dict[str, Any] = {"home": home, "beliefs_anti_entropy_s": 0.2, **settings}
        if db_url:
            opts["database_url"] = db_url
        s = load_settings(**opts)
        if db_url is None and not (home / "vsm.db").exists():
            copy_migrated(migrated_sqlite, home)
        async with connected(build, s, bus) as (ctx, client):
            yield Node(ctx, client)

    return factory


@pytest.fixture
def bus() -> MemoryBus:
    return MemoryBus()


def dump(node: Node, tenant: str) -> str:
    """A node's tenant state as canonical JSON (for equality across processes)."""
    from vsm_mcp.crdt import to_obj

    tr = node.service._tenants.get(tenant)
    return json.dumps(to_obj(tr.state), sort_keys=True) if tr else ""
