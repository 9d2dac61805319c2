"""Database set-up the integration suites share: a copy of the migrated SQLite template, and
tenants created the way an administrator creates them."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from vsm_mcp.db import Database
from vsm_mcp.models import Tenant
from vsm_mcp.tenants import create_tenant


def copy_migrated(template: Path, home: Path) -> Path:
    """``home``/vsm.db as a copy of the migrated template (the ``migrated_sqlite`` fixture); ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):  # a WAL the migration left behind belongs to the file
        src = template.with_name(template.name + suffix)
        if src.exists():
            shutil.copy(src, home / f"vsm.db{suffix}")
    return home


async def table_names(url: str) -> set[str]:
    """The tables in the database at ``url`` (an async SQLAlchemy URL)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def create_tenant_as_owner(db: Database, name: str) -> Tenant:
    """Tenants are the administrator's to create: on PostgreSQL the owner role, not the app role
    (vsm_app) ``db`` connects as."""
    owner = Database(db.settings, db.settings.migration_database_url)
    try:
        return await create_tenant(owner, name)
    finally:
        await owner.aclose()
