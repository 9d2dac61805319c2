"""Workers fixtures: a migrated database (SQLite copy per test, or a fresh PostgreSQL as the
non-owner role vsm_app), a memory bus and two tenants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.databases import copy_migrated
from vsm_mcp.bus import MemoryBus
from vsm_mcp.config import Settings, load_settings
from vsm_mcp.db import Database
from vsm_mcp.tenants import create_tenant


@dataclass
class Env:
    settings: Settings
    db: Database
    bus: MemoryBus
    a: str
    b: str


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sqlite_env(tmp_path: Path, migrated_sqlite: Path) -> AsyncIterator[Env]:
    settings = load_settings(home=copy_migrated(migrated_sqlite, tmp_path / ".vsm"))
    db, bus = Database(settings), MemoryBus()
    try:
        a = (await create_tenant(db, "alpha")).id
        b = (await create_tenant(db, "beta")).id
        yield Env(settings, db, bus, a, b)
    finally:
        await bus.aclose()
        await db.aclose()


@pytest.fixture
async def pg_env(pg_migrated: tuple[str, str]) -> AsyncIterator[Env]:
    owner_url, app_url = pg_migrated
    settings = load_settings(database_url=app_url, migration_database_url=owner_url)
    db, owner, bus = Database(settings), Database(settings, owner_url), MemoryBus()
    try:
        a = (await create_tenant(owner, "alpha")).id
        b = (await create_tenant(owner, "beta")).id
        yield Env(settings, db, bus, a, b)
    finally:
        await bus.aclose()
        await owner.aclose()
        await db.aclose()


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest) -> Env:
    """The same test on the embedded SQLite and on PostgreSQL with row-level security."""
    return request.getfixturevalue(f"{request.param}_env")  # type: ignore[no-any-return]
