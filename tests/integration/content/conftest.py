"""A content server wired to real search and storage servers, in-process, on a migrated database.

The content server reaches the search server only through ``ctx.tools`` (as under the router).
``RouterTools`` is the router's own runtime when it is available; the fixtures use it so the
calls go through dispatch (grants, policy, limits).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest

from servers.content.server import build as build_content
from servers.search.server import build as build_search
from vsm_mcp import migrate
from vsm_mcp.auth import Principal
from vsm_mcp.config import Settings, load_settings
from vsm_mcp.context import TENANT_META_KEY, ServerContext


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ClientTools:
    """``ctx.tools`` over in-process clients of the named servers (``<server>__<tool>``), carrying
    the principal in ``_meta`` as the router does."""

    def __init__(self, clients: dict[str, mcp.Client]) -> None:
        self.clients = clients
        self.calls = 0

    async def call(self, principal: Principal, name: str, arguments: dict[str, Any], *, source: str = "mcp",
                   meta: dict[str, Any] | None = None) -> Any:
        server, _, tool = name.partition("__")
        self.calls += 1
        return await self.clients[server].call_tool(tool, arguments, meta={**principal.to_meta(), **(meta or {})})


@dataclass
class Stack:
    settings: Settings
    ctx: ServerContext
    content: mcp.Client
    search: mcp.Client
    tools: ClientTools

    async def call(self, tool: str, tenant: str, scopes: list[str] | None = None, key: str = "", **args: Any) -> Any:
        meta: dict[str, Any] = {TENANT_META_KEY: tenant}
        if scopes is not None:
            meta |= {"io.vsm/scopes": scopes, "io.vsm/key": key}
        res = await self.content.call_tool(tool, args, meta=meta)
        if res.is_error:
            raise ToolFailed(" ".join(getattr(c, "text", "") for c in res.content))
        return res.structured_content


class ToolFailed(Exception):
    pass


def content_settings(tmp_path: Path, **over: Any) -> Settings:
    base: dict[str, Any] = {
        "home": tmp_path / ".vsm", "embedder": "hash:64", "storage_sweep_interval_s": 0,
        "fetch_allow": ["127.0.0.1/32"], "content_batch_size": 16,
    }
    return load_settings(**(base | over))


async def open_stack(settings: Settings) -> AsyncIterator[Stack]:
    await anyio.to_thread.run_sync(migrate.upgrade, settings.migration_database_url)
    ctx = ServerContext.create(settings)
    search = mcp.Client(build_search(ctx))
    content = mcp.Client(build_content(ctx))
    async with search, content:
        tools = ClientTools({"search": search})
        ctx.tools = tools  # type: ignore[attr-defined]
        yield Stack(settings, ctx, content, search, tools)
    await ctx.aclose()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async for s in open_stack(content_settings(tmp_path)):
        yield s
