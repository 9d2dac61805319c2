"""Workers fixtures: a migrated database (SQLite copy per test, or a fresh PostgreSQL as the
non-owner role vsm_app), a memory bus and two tenants."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vsm_mcp import migrate
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


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("workers-template") / "vsm.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
async def sqlite_env(tmp_path: Path, migrated_sqlite: Path) -> AsyncIterator[Env]:
    (tmp_path / ".vsm").mkdir(exist_ok=True)
    shutil.copy(migrated_sqlite, tmp_path / ".vsm" / "vsm.db")
    settings = load_settings(home=tmp_path / ".vsm")
    db, bus = Database(settings), MemoryBus()
    try:
        a = (await create_tenant(db, "alpha")).id
        b = (await create_tenant(db, "beta")).id
        yield Env(settings, db, bus, a, b)
    finally:
        await bus.aclose()
        await db.aclose()


@pytest.fixture
def pg_migrated(pg_owner_url: str, pg_app_url: str) -> tuple[str, str]:
    migrate.upgrade(pg_owner_url)
    return pg_owner_url, pg_app_url


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
