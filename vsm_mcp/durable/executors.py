"""Executor liveness: which processes sharing the system database are alive, and recovery of
the workflows a dead one left pending.

DBOS recovers at launch only the workflows pending under its *own* executor id; recovering
another process's work is Conductor's job, which we do not run. So each process writes a
heartbeat row here, and every process sweeps: an executor silent for longer than
``VSM_DBOS_EXECUTOR_LEASE_S`` is presumed dead and its pending workflows are re-enqueued. The
re-enqueue is DBOS's own, guarded by the dead executor's id, so two sweepers racing over one
corpse re-enqueue each workflow once and one live process dequeues it.
"""

from __future__ import annotations

import logging
import os
import socket
import time

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

log = logging.getLogger("vsm_mcp.durable")

_metadata = sa.MetaData()


def _table(schema: str | None) -> sa.Table:
    key = f"{schema}.vsm_executors" if schema else "vsm_executors"
    if key in _metadata.tables:
        return _metadata.tables[key]
    return sa.Table(
        "vsm_executors", _metadata,
        sa.Column("executor_id", sa.String(200), primary_key=True),
        sa.Column("last_seen_ms", sa.BigInteger, nullable=False),
        sa.Column("started_ms", sa.BigInteger, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        schema=schema,
    )


class ExecutorRegistry:
    """Heartbeat rows of the executors sharing one system database (sync; call from a thread)."""

    def __init__(self, url: str, executor_id: str, role: str) -> None:
        self.executor_id = executor_id
        self.role = role
        self._sqlite = url.startswith("sqlite")
        self._engine = sa.create_engine(url, pool_size=1, max_overflow=1)
        self.table = _table(None if self._sqlite else "dbos")
        self._started_ms = int(time.time() * 1000)

    def ensure_table(self) -> None:
        """Create the table if missing (the owner does it in `vsm-mcp migrate` on PostgreSQL).

        One statement, IF NOT EXISTS: two processes starting on one home at once both saw no
        table and both ran CREATE TABLE, and the second failed its start-up ("table vsm_executors
        already exists"; seen in tests/integration/gate/test_shared_limits.py's two replicas)."""
        if not sa.inspect(self._engine).has_table("vsm_executors", schema=self.table.schema):
            with self._engine.begin() as conn:
                conn.execute(CreateTable(self.table, if_not_exists=True))

    def beat(self) -> None:
        now = int(time.time() * 1000)
        t = self.table
        with self._engine.begin() as conn:
            updated = conn.execute(
                t.update().where(t.c.executor_id == self.executor_id).values(last_seen_ms=now)
            ).rowcount
            if not updated:
                conn.execute(t.insert().values(
                    executor_id=self.executor_id, last_seen_ms=now, started_ms=self._started_ms,
                    host=socket.gethostname(), pid=os.getpid(), role=self.role,
                ))

    def silent_for(self, lease_s: float) -> list[str]:
        """Executors other than this one whose last heartbeat is older than ``lease_s``."""
        cutoff = int((time.time() - lease_s) * 1000)
        t = self.table
        with self._engine.begin() as conn:
            rows = conn.execute(
                sa.select(t.c.executor_id).where(t.c.last_seen_ms < cutoff, t.c.executor_id != self.executor_id)
            ).fetchall()
        return [r[0] for r in rows]

    def live(self, lease_s: float) -> list[dict[str, object]]:
        """Executors heard from within ``lease_s`` (for status pages and tests)."""
        cutoff = int((time.time() - lease_s) * 1000)
        t = self.table
        with self._engine.begin() as conn:
            rows = conn.execute(sa.select(t).where(t.c.last_seen_ms >= cutoff)).mappings().fetchall()
        return [dict(r) for r in rows]

    def forget(self, executor_id: str) -> None:
        t = self.table
        with self._engine.begin() as conn:
            conn.execute(t.delete().where(t.c.executor_id == executor_id))

    def close(self) -> None:
        self._engine.dispose()


def sweep(registry: ExecutorRegistry, lease_s: float) -> list[str]:
    """Recover the pending workflows of every silent executor; returns the ids swept."""
    from dbos import DBOS

    swept: list[str] = []
    for dead in registry.silent_for(lease_s):
        try:
            # Private DBOS API (pinned range in pyproject): re-enqueue PENDING workflows of
            # `dead`, guarded by its executor id so concurrent sweeps do not duplicate work.
            handles = DBOS._recover_pending_workflows([dead])
        except Exception:  # a sweep must never take the process down; the next one retries
            log.exception("recovering the workflows of executor %s failed", dead)
            continue
        if handles:
            log.warning("executor %s went silent; re-enqueued %d of its workflows", dead, len(handles))
        registry.forget(dead)
        swept.append(dead)
    return swept
