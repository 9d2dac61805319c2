"""Migrations upgrade and downgrade cleanly on fresh PostgreSQL and SQLite databases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.databases import table_names
from vsm_mcp import migrate

FOUNDATION_TABLES = {"tenants", "api_keys", "system_states", "episodes", "policies", "artifacts"}


def _tables(url: str) -> set[str]:
    return asyncio.run(table_names(url))


@pytest.fixture(params=["sqlite", "postgres"])
def owner_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    return str(request.getfixturevalue("pg_owner_url"))


def test_upgrade_downgrade_upgrade(owner_url: str) -> None:
    migrate.upgrade(owner_url)
    assert FOUNDATION_TABLES <= _tables(owner_url)
    migrate.upgrade(owner_url)  # idempotent
    migrate.downgrade(owner_url, "base")
    assert _tables(owner_url) <= {"alembic_version"}
    migrate.upgrade(owner_url)
    assert FOUNDATION_TABLES <= _tables(owner_url)


@pytest.mark.postgres
def test_replicas_migrating_at_once_both_succeed(pg_owner_url: str) -> None:
    """Routers started together each migrate at start-up; without one migrator at a time the
    second's GRANT failed with "tuple concurrently updated" (seen in CI: beliefs cluster test)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        outcomes = [f.exception(timeout=300) for f in [pool.submit(migrate.upgrade, pg_owner_url) for _ in range(3)]]
    assert outcomes == [None, None, None]
    assert FOUNDATION_TABLES <= _tables(pg_owner_url)
