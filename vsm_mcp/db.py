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
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import event, make_url, select, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.pool import NullPool

from vsm_mcp.config import Settings, sqlite_file
from vsm_mcp.errors import DatabaseUnavailable, Forbidden, InvalidArguments
from vsm_mcp.models import TenantOwned
from vsm_mcp.sqlite_conn import sqlite_creator

M = TypeVar("M", bound=TenantOwned)

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
        path = sqlite_file(url)
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(url, async_creator=sqlite_creator(path, timeout=5))
        else:
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
    # One criterion per mapped class: the SQLModel mixin itself is not mapped, so it can't be
    # the target, and `state.all_mappers` misses entities named only in select_from().
    # The lambda form lets SQLAlchemy cache the criterion's SQL and bind `tenant` as a parameter.
    state.statement = state.statement.options(
        *(
            with_loader_criteria(cls, lambda c: c.tenant_id == tenant, include_aliases=True)
            for cls in _tenant_models()
        )
    )


def _tenant_models() -> list[type[TenantOwned]]:
    found: list[type[TenantOwned]] = []
    stack: list[type[TenantOwned]] = [TenantOwned]
    while stack:
        for sub in stack.pop().__subclasses__():
            stack.append(sub)
            if "__table__" in sub.__dict__:
                found.append(sub)
    return found


@event.listens_for(Session, "before_flush")
def _check_tenant_on_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    tenant = session.info.get(TENANT_KEY)
    if tenant is None:
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


class PointQueryLane:
    """A few raw asyncpg connections for point queries (``Database.get``).

    SQLAlchemy's pool checkout and asyncpg's pool reset (a round trip on release) each cost
    as much as the query itself; a LIFO free-list needs neither, because every use is one
    transaction whose ``SET LOCAL`` ends with it.
    """

    def __init__(self, url: str, settings: Settings) -> None:
        self._url = make_url(url)
        self._timeout = str(settings.db_statement_timeout_ms)
        self._free: list[asyncpg.Connection] = []
        self._slots = asyncio.Semaphore(settings.db_pool_size)

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(
            host=self._url.host, port=self._url.port or 5432, user=self._url.username,
            password=self._url.password, database=self._url.database, timeout=5,
            server_settings={"statement_timeout": self._timeout},
        )
        for typ in ("json", "jsonb"):
            await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        return conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._slots:
            conn = self._free.pop() if self._free else await self._connect()
            try:
                yield conn
            except BaseException:
                await conn.close(timeout=2)
                raise
            if conn.is_closed():
                return
            self._free.append(conn)

    async def aclose(self) -> None:
        while self._free:
            await self._free.pop().close(timeout=2)


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
        self._lane = PointQueryLane(self.url, settings)

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

    async def get(self, tenant_id: str, model: type[M], pk: str) -> M | None:
        """Tenant-scoped point lookup by primary key — the hot path, kept close to the driver.

        On PostgreSQL it runs the same four statements a hand-written asyncpg call would
        (BEGIN, set_config, a cached prepared SELECT, COMMIT) on a connection of the point-query
        lane: RLS filters, the explicit ``tenant_id`` predicate is a second line. SQLite goes
        through the ORM session.
        """
        if not tenant_id:
            raise InvalidArguments("a tenant is required")
        if not self.is_postgres:
            async with self.tenant(tenant_id) as session:
                stmt = select(model).where(model.id == pk)  # type: ignore[attr-defined]
                return (await session.execute(stmt)).scalars().first()
        table = model.__tablename__
        sql = f"SELECT * FROM {table} WHERE id = $1 AND tenant_id = $2"
        try:
            async with self._lane.connection() as conn, conn.transaction():
                await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant_id)
                row = await conn.fetchrow(sql, pk, tenant_id)
        except (OSError, ConnectionError, asyncpg.PostgresConnectionError) as exc:
            raise map_db_error(exc) from exc
        return None if row is None else model(**dict(row))

    def pool_status(self) -> dict[str, int]:
        pool = self.engine.pool
        size = getattr(pool, "size", lambda: 0)()
        checked_out = getattr(pool, "checkedout", lambda: 0)()
        return {"size": int(size), "checked_out": int(checked_out)}

    async def aclose(self) -> None:
        await self._lane.aclose()
        await self.engine.dispose()
