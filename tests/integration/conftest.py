"""Fixtures the integration suites share: the migrated SQLite template, migrated PostgreSQL URLs,
and migrated settings with a database on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vsm_mcp import migrate
from vsm_mcp.config import Settings, load_settings
from vsm_mcp.db import Database


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session; tests start from a copy (tests/integration/databases.py
    ``copy_migrated``) because running Alembic for every test is slow."""
    path = tmp_path_factory.mktemp("template") / "vsm.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def pg_migrated(pg_owner_url: str, pg_app_url: str) -> tuple[str, str]:
    """(owner URL, app URL) of a fresh PostgreSQL database, migrated outside the event loop
    (Alembic's env runs its own loop)."""
    migrate.upgrade(pg_owner_url)
    return pg_owner_url, pg_app_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest) -> Settings:
    """Migrated settings, once on SQLite and once on PostgreSQL, where the app connects as vsm_app
    so row-level security applies."""
    if request.param == "sqlite":
        s = load_settings()
    else:
        owner = request.getfixturevalue("pg_owner_url")
        s = load_settings(database_url=request.getfixturevalue("pg_app_url"), migration_database_url=owner)
    migrate.upgrade(s.migration_database_url)
    return s


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings)
    try:
        yield database
    finally:
        await database.aclose()
