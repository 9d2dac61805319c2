"""Policy fixtures: a migrated database (SQLite copy per test, or a fresh PostgreSQL as vsm_app),
two tenants, and a settable clock for ``context.time``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.databases import copy_migrated
from vsm_mcp.bus import MemoryBus
from vsm_mcp.config import load_settings
from vsm_mcp.context import ServerContext
from vsm_mcp.db import Database
from vsm_mcp.policy.service import CLOCK_KEY
from vsm_mcp.tenants import create_tenant


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    ctx: ServerContext
    a: str
    b: str
    clock: Clock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _env(ctx: ServerContext, owner: Database) -> Env:
    clock = Clock(1_764_151_200.0)  # 2025-11-26T10:00:00Z, a Wednesday inside working hours
    ctx.extras[CLOCK_KEY] = clock
    a = (await create_tenant(owner, "alpha")).id
    b = (await create_tenant(owner, "beta")).id
    return Env(ctx, a, b, clock)


@pytest.fixture
async def sqlite_env(tmp_path: Path, migrated_sqlite: Path) -> AsyncIterator[Env]:
    settings = load_settings(home=copy_migrated(migrated_sqlite, tmp_path / ".vsm"))
    ctx = ServerContext(settings=settings, db=Database(settings), bus=MemoryBus())
    try:
        yield await _env(ctx, ctx.db)
    finally:
        await ctx.aclose()


@pytest.fixture
async def pg_env(pg_migrated: tuple[str, str]) -> AsyncIterator[Env]:
    pg_owner_url, pg_app_url = pg_migrated
    settings = load_settings(database_url=pg_app_url, migration_database_url=pg_owner_url)
    ctx = ServerContext(settings=settings, db=Database(settings), bus=MemoryBus())
    owner = Database(settings, pg_owner_url)
    try:
        yield await _env(ctx, owner)
    finally:
        await owner.aclose()
        await ctx.aclose()
