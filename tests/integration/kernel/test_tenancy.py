"""Cross-tenant isolation, on PostgreSQL (RLS, as the non-owner role vsm_app) and SQLite (data layer).

The same data-layer tests run on both backends; the raw-SQL tests prove that on PostgreSQL
the database itself refuses, whatever the application does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import delete, func, select, update

from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database
from vsm_mcp.errors import Forbidden, InvalidArguments
from vsm_mcp.models import TENANT_OWNED, ApiKey, Artifact, Episode, Policy, SystemState, TenantOwned
from vsm_mcp.tenants import create_tenant, ensure_tenant, list_tenants

from ...conftest import PG_HOST, PG_PORT


def _row(model: type[TenantOwned], tenant_id: str, tag: str) -> TenantOwned:
    fields: dict[str, dict[str, Any]] = {
        "api_keys": {"prefix": "vsm_x", "key_hash": f"h-{tenant_id}-{tag}", "scopes": ["tools:call"]},
        "system_states": {"system": f"s{tag}"},
        "episodes": {"server": "srv", "tool": f"t{tag}", "outcome": "ok"},
        "policies": {"name": f"p{tag}", "source": "default deny"},
        "artifacts": {"bucket": "b", "key": f"k{tag}"},
    }
    return model(tenant_id=tenant_id, **fields[model.__tablename__])  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgres"])
def db_pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    """(app database, owner database) — on PostgreSQL the app connects as vsm_app."""
    if request.param == "sqlite":
        owner = app = f"sqlite+aiosqlite:///{tmp_path / 'iso.db'}"
    else:
        owner = request.getfixturevalue("pg_owner_url")
        app = request.getfixturevalue("pg_app_url")
    migrate.upgrade(owner)
    settings = load_settings(database_url=app, migration_database_url=owner)
    # Each test closes both inside its own event loop (connections are bound to the loop).
    yield Database(settings, app), Database(settings, owner)


async def _closing(work: Coroutine[Any, Any, None], *dbs: Database) -> None:
    try:
        await work
    finally:
        for db in dbs:
            await db.aclose()


async def _two_tenants(owner: Database, app: Database) -> tuple[str, str]:
    a = (await create_tenant(owner, "alpha")).id
    b = (await create_tenant(owner, "beta")).id
    for tid in (a, b):
        async with app.tenant(tid) as s:
            for model in TENANT_OWNED:
                s.add(_row(model, tid, "1"))
    return a, b


def test_concurrent_ensure_tenant_creates_one(db_pair: tuple[Database, Database]) -> None:
    """Two agents' first requests at once both create the default tenant: one insert wins, the
    other reads it back (the losing commit's unique-constraint error is a Conflict, not a 500)."""
    _, owner = db_pair

    async def go() -> None:
        got = await asyncio.gather(*(ensure_tenant(owner, "shared") for _ in range(8)))
        assert len({t.id for t in got}) == 1
        assert [t.name for t in await list_tenants(owner)].count("shared") == 1

    asyncio.run(_closing(go(), owner))


def test_tenant_sees_only_its_rows(db_pair: tuple[Database, Database]) -> None:
    app, owner = db_pair

    async def go() -> None:
        a, b = await _two_tenants(owner, app)
        for model in TENANT_OWNED:
            async with app.tenant(a) as s:
                rows = (await s.execute(select(model))).scalars().all()
                assert [r.tenant_id for r in rows] == [a], model.__tablename__
                n = (await s.execute(select(func.count()).select_from(model))).scalar_one()
                assert n == 1, model.__tablename__
                upd = await s.execute(update(model).where(model.tenant_id == b).values(updated_at=func.now()))
                assert upd.rowcount == 0, model.__tablename__  # type: ignore[attr-defined]
                dele = await s.execute(delete(model).where(model.tenant_id == b))
                assert dele.rowcount == 0, model.__tablename__  # type: ignore[attr-defined]
        async with app.tenant(b) as s:
            for model in TENANT_OWNED:
                assert (await s.execute(select(func.count()).select_from(model))).scalar_one() == 1

    asyncio.run(_closing(go(), app, owner))


def test_cannot_write_a_row_for_another_tenant(db_pair: tuple[Database, Database]) -> None:
    app, owner = db_pair

    async def go() -> None:
        a, b = await _two_tenants(owner, app)
        for model in TENANT_OWNED:
            with pytest.raises(Forbidden):
                async with app.tenant(a) as s:
                    s.add(_row(model, b, "2"))
        with pytest.raises(Forbidden):
            async with app.system() as s:
                s.add(Episode(tenant_id=a, server="x", tool="y", outcome="ok"))
        with pytest.raises(InvalidArguments):
            async with app.tenant(""):
                pass

    asyncio.run(_closing(go(), app, owner))


def test_get_by_primary_key_of_other_tenant_returns_nothing(db_pair: tuple[Database, Database]) -> None:
    app, owner = db_pair

    async def go() -> None:
        a, b = await _two_tenants(owner, app)
        async with app.tenant(b) as s:
            b_policy = (await s.execute(select(Policy))).scalars().one()
        async with app.tenant(a) as s:
            assert (await s.execute(select(Policy).where(Policy.id == b_policy.id))).first() is None
        # The point-query fast path (Database.get) isolates the same way.
        assert await app.get(a, Policy, b_policy.id) is None
        found = await app.get(b, Policy, b_policy.id)
        assert found is not None and found.name == b_policy.name and found.meta == {}

    asyncio.run(_closing(go(), app, owner))


# --- PostgreSQL only: the database enforces it, not just our data layer -----------------


async def _raw_app_conn(database: str) -> asyncpg.Connection:
    return await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="vsm_app", database=database)


@pytest.mark.postgres
def test_rls_as_vsm_app_raw_sql(pg_database: str, pg_owner_url: str, pg_app_url: str) -> None:
    migrate.upgrade(pg_owner_url)
    settings = load_settings(database_url=pg_app_url, migration_database_url=pg_owner_url)

    async def go() -> None:
        owner = Database(settings, pg_owner_url)
        app = Database(settings, pg_app_url)
        try:
            a, b = await _two_tenants(owner, app)
        finally:
            await owner.aclose()
            await app.aclose()
        conn = await _raw_app_conn(pg_database)
        try:
            role = await conn.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            assert role is not None and not role["rolsuper"] and not role["rolbypassrls"]
            tables = [m.__tablename__ for m in TENANT_OWNED]  # type: ignore[attr-defined]
            # No tenant set: zero rows, no error.
            for t in tables:
                assert await conn.fetchval(f"SELECT count(*) FROM {t}") == 0, t
            # Tenant A in a transaction: only A; updates/deletes of B affect 0 rows; inserting B fails.
            for t in tables:
                async with conn.transaction():
                    await conn.execute("SELECT set_config('app.tenant_id', $1, true)", a)
                    assert await conn.fetchval(f"SELECT count(*) FROM {t}") == 1
                    assert await conn.fetchval(f"SELECT count(*) FROM {t} WHERE tenant_id = $1", b) == 0
                    assert await conn.execute(f"UPDATE {t} SET updated_at = now() WHERE tenant_id = $1", b) == "UPDATE 0"
                    assert await conn.execute(f"DELETE FROM {t} WHERE tenant_id = $1", b) == "DELETE 0"
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    async with conn.transaction():
                        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", a)
                        await conn.execute(f"UPDATE {t} SET tenant_id = $1", b)
                        # the WITH CHECK clause refuses moving A's row to B
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with conn.transaction():
                    await conn.execute("SELECT set_config('app.tenant_id', $1, true)", a)
                    await conn.execute(
                        "INSERT INTO episodes (id, tenant_id, created_at, updated_at, principal_id, server, tool,"
                        " outcome, duration_ms, args_sha256, error, trace_id, data)"
                        " VALUES ('x', $1, now(), now(), '', 's', 't', 'ok', 0, '', '', '', '{}')",
                        b,
                    )
            # Same pooled connection after the tenant's transaction ended: '' not NULL -> still zero rows.
            assert await conn.fetchval("SELECT current_setting('app.tenant_id', true)") == ""
            for t in tables:
                assert await conn.fetchval(f"SELECT count(*) FROM {t}") == 0, t
            # The app role cannot switch RLS off or read the key table around the function.
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("ALTER TABLE episodes DISABLE ROW LEVEL SECURITY")
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.mark.postgres
def test_api_key_resolution_through_definer_function(pg_owner_url: str, pg_app_url: str) -> None:
    from vsm_mcp.errors import Unauthorized
    from vsm_mcp.keys import resolve_api_key
    from vsm_mcp.tenants import create_api_key

    migrate.upgrade(pg_owner_url)
    settings = load_settings(database_url=pg_app_url, migration_database_url=pg_owner_url)

    async def go() -> None:
        owner, app = Database(settings, pg_owner_url), Database(settings, pg_app_url)
        try:
            await create_tenant(owner, "gamma")
            key, row = await create_api_key(owner, "gamma", ["tools:call"])
            principal = await resolve_api_key(app, key)
            assert principal.key_id == row.id and principal.scopes == frozenset({"tools:call"})
            with pytest.raises(Unauthorized):
                await resolve_api_key(app, key + "x")
            async with app.system() as s:  # no tenant: the table itself shows nothing
                assert (await s.execute(select(func.count()).select_from(ApiKey))).scalar_one() == 0
        finally:
            await owner.aclose()
            await app.aclose()

    asyncio.run(go())


def test_system_states_and_artifacts_are_models() -> None:
    # Guard: a new tenant-owned model must be registered for RLS in its migration too.
    assert {SystemState, Artifact} <= set(TENANT_OWNED)
