"""The content server with the search and storage servers behind the real router runtime
(manifests/default.yaml entries, in-process), on a migrated database.

The content server reaches the search server only through ``ctx.tools`` — the router's
dispatcher — so every index and search call passes grants, policy, limits and audit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from router.local import running_router
from router.runtime import RouterRuntime
from router.upstreams.manifest import DEFAULT_MANIFEST, parse_manifest
from vsm_mcp import migrate
from vsm_mcp.auth import Principal
from vsm_mcp.config import Settings, load_settings
from vsm_mcp.db import Database
from vsm_mcp.tenants import ensure_tenant

SERVERS = ("content", "search", "storage")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ToolFailed(Exception):
    pass


def structured(res: Any) -> Any:
    """A tool result's structured content; ToolFailed with the error text when the tool failed."""
    if res.is_error:
        raise ToolFailed(" ".join(getattr(c, "text", "") for c in res.content))
    return res.structured_content


@dataclass
class Stack:
    settings: Settings
    runtime: RouterRuntime

    @property
    def ctx(self) -> Any:
        return self.runtime.ctx

    async def raw(self, tool: str, tenant: str, scopes: list[str] | None = None, key: str = "", **args: Any) -> Any:
        principal = Principal(tenant, frozenset(scopes if scopes is not None else ["*"]), key)
        return await self.runtime.dispatcher.call_tool(principal, tool, args, source="test")

    async def call(self, tool: str, tenant: str, scopes: list[str] | None = None, key: str = "", **args: Any) -> Any:
        """A content tool's structured result; ToolFailed with the error text when it failed."""
        return structured(await self.raw(f"content__{tool}", tenant, scopes, key, **args))

    async def ingest(self, tool: str, tenant: str, **args: Any) -> Any:
        """Start an ingest job and follow it to its end (``wait`` answers after VSM_CONTENT_WAIT_S)."""
        st = await self.call(tool, tenant, wait=True, **args)
        while st.get("state") not in ("done", "failed"):
            await anyio.sleep(0.2)
            st = await self.call("ingest_status", tenant, job=st["job"])
        return st


def entries(servers: tuple[str, ...] = SERVERS) -> list[dict[str, Any]]:
    """The ``servers``' entries in manifests/default.yaml."""
    ups = [u for u in yaml.safe_load(Path(DEFAULT_MANIFEST).read_text())["upstreams"] if u["name"] in servers]
    assert {u["name"] for u in ups} == set(servers), f"manifests/default.yaml must mount {', '.join(servers)}"
    return ups


def content_settings(tmp_path: Path, **over: Any) -> Settings:
    base: dict[str, Any] = {
        "home": tmp_path / ".vsm", "embedder": "hash:64", "storage_sweep_interval_s": 0,
        "fetch_allow": ["127.0.0.1/32"], "content_batch_size": 16, "rate_limit": 0,
    }
    return load_settings(**(base | over))


async def prepare_database(settings: Settings) -> None:
    await anyio.to_thread.run_sync(migrate.upgrade, settings.migration_database_url)
    if settings.is_postgres:  # the app role may not insert tenants: the owner makes the default one
        owner = Database(settings, settings.migration_database_url)
        try:
            await ensure_tenant(owner, settings.default_tenant)
        finally:
            await owner.aclose()


async def open_stack(settings: Settings, servers: tuple[str, ...] = SERVERS, stack: Callable[..., Any] = Stack,
                     **durable: Any) -> AsyncIterator[Any]:
    """``stack(settings, runtime)`` of a router on a prepared database, mounting ``servers``;
    ``durable``: running_router's ``durable_role`` and ``durable_queues``."""
    await prepare_database(settings)
    specs = parse_manifest({"upstreams": entries(servers)}, "default.yaml")
    async with running_router(settings, specs, **durable) as (runtime, _principal):
        yield stack(settings, runtime)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async for s in open_stack(content_settings(tmp_path)):
        yield s
