"""Async database access with tenant isolation on both backends.

``Database.tenant(tenant_id)`` is the only way application code reaches tenant-owned rows:
it opens a transaction, sets ``app.tenant_id`` with ``SET LOCAL`` semantics on PostgreSQL
(row-level security does the filtering, see migrations/), and on every backend adds the
ORM-level criterion ``tenant_id = :tenant`` to each SELECT/UPDATE/DELETE and refuses to flush
a row of another tenant. SQLite has no RLS, so the ORM criterion is its isolation; on
PostgreSQL it is a second line behind RLS.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.pool import NullPool

from vsm_mcp.config import Settings
from vsm_mcp.errors import DatabaseUnavailable, Forbidden, InvalidArguments
from vsm_mcp.models import TenantOwned

TENANT_KEY = "vsm_tenant_id"
SYSTEM_KEY = "vsm_system"


def rls_statements(table: str) -> list[str]:
    """DDL that isolates ``table`` by tenant on PostgreSQL (used by every migration)."""
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS tenant_isolation ON {table}",
        # NULLIF: a pooled connection that had a tenant set earlier returns '' here, not NULL.
        f"CREATE POLICY tenant_isolation ON {table} "
        f"USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')) "
        f"WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO vsm_app",
    ]


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # an acknowledged commit survives power loss
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def make_engine(url: str, settings: Settings) -> AsyncEngine:
    """An async engine with pooling and timeouts set from settings."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 5})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={
            "timeout": 5,
            "server_settings": {"statement_timeout": str(settings.db_statement_timeout_ms)},
        },
    )


def make_oneshot_engine(url: str, settings: Settings) -> AsyncEngine:
    """An engine without a pool, for CLI commands and migrations."""
    if url.startswith("sqlite"):
        return make_engine(url, settings)
    return create_async_engine(url, poolclass=NullPool, connect_args={"timeout": 5})


@event.listens_for(Session, "do_orm_execute")
def _add_tenant_criteria(state: ORMExecuteState) -> None:
    tenant = state.session.info.get(TENANT_KEY)
    if tenant is None or not (state.is_select or state.is_update or state.is_delete):
        return
    state.statement = state.statement.options(
        with_loader_criteria(TenantOwned, lambda cls: cls.tenant_id == tenant, include_aliases=True)
    )


@event.listens_for(Session, "before_flush")
def _check_tenant_on_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    tenant = session.info.get(TENANT_KEY)
    if tenant is None:
        if session.info.get(SYSTEM_KEY):
            return
        dirty = [o for o in (*session.new, *session.dirty) if isinstance(o, TenantOwned)]
        if dirty:
            raise Forbidden("tenant-owned rows can only be written inside Database.tenant(...)")
        return
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, TenantOwned):
            if not obj.tenant_id:
                obj.tenant_id = tenant
            elif obj.tenant_id != tenant:
                raise Forbidden("a row of another tenant cannot be written from this tenant's session")


def map_db_error(exc: BaseException) -> DatabaseUnavailable:
    """Turn a driver/connection error into one readable line."""
    orig = getattr(exc, "orig", None) or exc
    msg = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return DatabaseUnavailable(f"database unavailable: {msg}")


class Database:
    """The engine and the tenant-scoped session factory. One per process."""

    def __init__(self, settings: Settings, url: str | None = None) -> None:
        self.settings = settings
        self.url = url or settings.database_url
        self.engine = make_engine(self.url, settings)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def tenant(self, tenant_id: str) -> AsyncIterator[AsyncSession]:
        """A session + transaction that sees and writes only ``tenant_id``'s rows."""
        if not tenant_id:
            raise InvalidArguments("a tenant is required")
        async with self._sessions() as session:
            session.sync_session.info[TENANT_KEY] = tenant_id
            try:
                async with session.begin():
                    if self.is_postgres:
                        # is_local=true: SET LOCAL — reset at the end of this transaction.
                        await session.execute(
                            text("SELECT set_config('app.tenant_id', :t, true)"), {"t": tenant_id}
                        )
                    yield session
            except (OperationalError, OSError, ConnectionError) as exc:
                raise map_db_error(exc) from exc

    @asynccontextmanager
    async def system(self) -> AsyncIterator[AsyncSession]:
        """A session for global tables (tenants) and key resolution; sees no tenant rows on PostgreSQL."""
        async with self._sessions() as session:
            session.sync_session.info[SYSTEM_KEY] = True
            try:
                async with session.begin():
                    yield session
            except (OperationalError, OSError, ConnectionError) as exc:
                raise map_db_error(exc) from exc

    async def health(self, timeout: float = 2.0) -> tuple[bool, str]:
        """(ok, detail): one round trip to the database, bounded by ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return True, "ok"
        except TimeoutError:
            return False, f"no answer within {timeout:.0f}s"
        except (DBAPIError, OSError, ConnectionError) as exc:
            return False, map_db_error(exc).message

    def pool_status(self) -> dict[str, int]:
        pool = self.engine.pool
        size = getattr(pool, "size", lambda: 0)()
        checked_out = getattr(pool, "checkedout", lambda: 0)()
        return {"size": int(size), "checked_out": int(checked_out)}

    async def aclose(self) -> None:
        await self.engine.dispose()
