"""Migration 0006_beliefs and tenant isolation of the belief tables (row-level security)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from servers.beliefs.store import BeliefStore
from servers.beliefs.tables import BeliefLogRow
from tests.integration.databases import table_names
from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.crdt import Belief, Replica
from vsm_mcp.db import Database

TABLES = {"belief_log", "belief_snapshots"}


def _up_and_down(url: str) -> None:
    migrate.upgrade(url)
    assert TABLES <= asyncio.run(table_names(url))
    migrate.downgrade(url, "0006_beliefs@-1")
    left = asyncio.run(table_names(url))
    assert not TABLES & left and "tenants" in left
    migrate.upgrade(url)
    assert TABLES <= asyncio.run(table_names(url))


def test_migration_upgrades_and_downgrades_cleanly_on_sqlite(tmp_path: Path) -> None:
    _up_and_down(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_migration_and_row_level_security_on_postgres(pg_owner_url: str, pg_app_url: str) -> None:
    _up_and_down(pg_owner_url)
    asyncio.run(_isolation(pg_app_url))


async def _isolation(app_url: str) -> None:
    db = Database(load_settings(database_url=app_url), app_url)
    try:
        store = BeliefStore(db, "node-1")
        r1, r2 = Replica("node-1"), Replica("node-1")
        await store.append("tenant-a", 1, r1.assert_belief("secret", Belief("a's")))
        await store.append("tenant-b", 1, r2.assert_belief("other", Belief("b's")))
        await store.snapshot("tenant-a", r1.state, 1)
        a = await store.load("tenant-a")
        b = await store.load("tenant-b")
        assert list(a.state.keys()) == ["secret"] and list(b.state.keys()) == ["other"]
        # The database itself (RLS), not only the ORM filter, hides the other tenant's rows.
        async with db.tenant("tenant-b") as s:
            raw = (await s.execute(text("SELECT tenant_id FROM belief_log UNION ALL SELECT tenant_id FROM belief_snapshots"))).all()
            assert {row[0] for row in raw} == {"tenant-b"}
            assert [r.tenant_id for r in (await s.execute(select(BeliefLogRow))).scalars()] == ["tenant-b"]
        async with db.system() as s:
            assert (await s.execute(text("SELECT count(*) FROM belief_log"))).scalar() == 0
    finally:
        await db.aclose()
