"""Belief-server nodes in one process: each has its own home (SQLite database, node id) and
they share one in-process bus, like replicas sharing RabbitMQ."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from servers.beliefs.server import build, service_of
from servers.beliefs.service import BeliefService
from vsm_mcp import migrate
from vsm_mcp.bus import Bus, MemoryBus
from vsm_mcp.config import load_settings
from vsm_mcp.context import TENANT_META_KEY, ServerContext
from vsm_mcp.db import Database


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


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated to heads; each node starts from a copy (migrating is slow)."""
    path = tmp_path_factory.mktemp("beliefs-template") / "vsm.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


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
            home.mkdir(parents=True, exist_ok=True)
            for suffix in ("", "-wal", "-shm"):
                src = migrated_sqlite.with_name(migrated_sqlite.name + suffix)
                if src.exists():
                    shutil.copy(src, home / f"vsm.db{suffix}")
        ctx = ServerContext(settings=s, db=Database(s), bus=bus)
        async with AsyncExitStack() as stack:
            stack.push_async_callback(ctx.db.aclose)
            client = await stack.enter_async_context(Client(build(ctx)))
            yield Node(ctx, client)

    return factory


@pytest.fixture
def bus() -> MemoryBus:
    return MemoryBus()


async def eventually(check: Callable[[], Any], timeout: float = 30.0) -> None:
    """Poll ``check`` (sync or async, truthy = done) until it holds; never a fixed sleep."""
    with anyio.fail_after(timeout):
        while True:
            ok = check()
            if hasattr(ok, "__await__"):
                ok = await ok
            if ok:
                return
            await anyio.sleep(0.05)


def dump(node: Node, tenant: str) -> str:
    """A node's tenant state as canonical JSON (for equality across processes)."""
    from vsm_mcp.crdt import to_obj

    tr = node.service._tenants.get(tenant)
    return json.dumps(to_obj(tr.state), sort_keys=True) if tr else ""
