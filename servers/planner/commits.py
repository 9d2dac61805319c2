"""Group commit of the planner's short writes (a step starting, a step ending).

A write arriving while a commit is in flight waits for the next one and shares it with every
other write that arrived meanwhile: a wide DAG's steps start and end in bursts, and a burst of N
commits becomes one or two. Writes are plain functions of a sync Core ``Connection`` that name
the tenant in their own WHERE (the ORM's per-statement tenant criteria cost more than the
statements here). A batch runs in one worker-thread hop on a kept sync connection — sqlite3, or
psycopg as the application's role with the tenant set for the transaction, so PostgreSQL's
row-level security applies as on every other path. The async drivers hop once per statement
(aiosqlite: ~6 ms each on a loaded 2-core machine, more than the batch's commit).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vsm_mcp.db import Database, map_db_error

Write = Callable[[Connection], Any]
INFLIGHT_PG = 4  # batches in flight per tenant on PostgreSQL, each on a kept connection
SET_TENANT = sa.text("SELECT set_config('app.tenant_id', :t, true)")


def _pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # as vsm_mcp/db.py: an acknowledged commit survives power loss
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class GroupCommit:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._postgres = db.is_postgres
        # One kept connection (opening one costs ms per batch); a second tenant's batch may open more.
        if self._postgres:
            url = sa.make_url(db.url).set(drivername="postgresql+psycopg")
            timeout_ms = db.settings.db_statement_timeout_ms
            self._engine = sa.create_engine(
                url, pool_size=INFLIGHT_PG, max_overflow=2, pool_recycle=1800,
                connect_args={"connect_timeout": 5, "options": f"-c statement_timeout={timeout_ms}"},
            )
        else:
            url = sa.make_url(db.url).set(drivername="sqlite")
            self._engine = sa.create_engine(
                url, pool_size=1, max_overflow=4, connect_args={"timeout": 5, "check_same_thread": False}
            )
            sa.event.listen(self._engine, "connect", _pragmas)
        # SQLite has one writer at a time; PostgreSQL commits concurrent transactions in parallel
        # (each waits for its WAL flush), so a few batches in flight keep the flushes overlapped.
        self._max_inflight = INFLIGHT_PG if self._postgres else 1
        self._queued: dict[str, list[tuple[Write, asyncio.Future[Any]]]] = {}
        self._drains: dict[str, set[asyncio.Task[None]]] = {}

    def close(self) -> None:
        self._engine.dispose()

    async def run(self, tenant: str, write: Write) -> Any:
        """Run ``write`` in the tenant's next commit and return its result."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.setdefault(tenant, []).append((write, fut))
        drains = self._drains.setdefault(tenant, set())
        if len(drains) < self._max_inflight:
            drains.add(asyncio.create_task(self._drain(tenant)))
        return await fut

    async def _execute(self, tenant: str, writes: list[Write]) -> list[Any]:
        def batch() -> list[Any]:
            with self._engine.begin() as conn:
                if self._postgres:  # SET LOCAL: row-level security sees this tenant only
                    conn.execute(SET_TENANT, {"t": tenant})
                return [w(conn) for w in writes]

        try:
            return await asyncio.to_thread(batch)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise map_db_error(exc) from exc

    async def _drain(self, tenant: str) -> None:
        me = asyncio.current_task()
        assert me is not None
        try:
            await self._drain_queue(tenant)
        finally:
            # Leave the set in the same step as finding the queue empty (no await between): a
            # write queued after that starts a new drain instead of waiting for this one.
            self._drains[tenant].discard(me)

    async def _drain_queue(self, tenant: str) -> None:
        while self._queued.get(tenant):
            batch = self._queued.pop(tenant)
            try:
                results = await self._execute(tenant, [w for w, _ in batch])
            except BaseException as exc:  # the transaction is gone: every write in it failed
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
