"""The event envelope every bus message carries, and the durable event log.

Ids are time-ordered (``<ms since epoch, 13 digits>-<counter, 6 digits>-<random>``) so the event
log can replay "everything after id X" with a plain ``id > X`` comparison.

The log (table ``event_log``, tenant-owned, row-level security on PostgreSQL) keeps every event
*published by this process* that has a tenant, for ``VSM_EVENT_LOG_RETENTION_HOURS``. It is fed
by a bus tap (``bus.add_tap(log.append)``), so each event is logged once however many replicas
receive it. ``append`` only puts the event in memory; a background task writes batches every
``VSM_EVENT_LOG_FLUSH_MS`` (one transaction per tenant), so publishing never waits on the
database. ``replay`` reads the table *and* the not-yet-written batch, so a reader never misses
an event that is merely in flight.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from sqlalchemy import JSON, Column, delete, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Field as SQLField
from sqlmodel import select

from vsm_mcp.models import TenantOwned

if TYPE_CHECKING:
    from vsm_mcp.db import Database

log = logging.getLogger("vsm_mcp.bus.events")
_counter = itertools.count()
_JSON = JSON().with_variant(JSONB(), "postgresql")


def new_event_id() -> str:
    return f"{int(time.time() * 1000):013d}-{next(_counter) % 1_000_000:06d}-{secrets.token_hex(3)}"


class Event(BaseModel):
    """A small typed message with a topic (``tool.called``, ``beliefs.delta.<tenant>`` …)."""

    id: str = Field(default_factory=new_event_id)
    topic: str
    tenant: str = ""
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    type: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    trace_id: str = ""


class EventRecord(TenantOwned, table=True):
    """One logged event (``tenant_id`` is the event's tenant)."""

    __tablename__ = "event_log"
    id: str = SQLField(primary_key=True, max_length=64)
    topic: str = SQLField(max_length=255)
    type: str = SQLField(default="", max_length=128)
    time: datetime
    trace_id: str = SQLField(default="", max_length=64)
    data: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(_JSON, nullable=False))

    def to_event(self) -> Event:
        when = self.time if self.time.tzinfo else self.time.replace(tzinfo=UTC)
        return Event(
            id=self.id, topic=self.topic, tenant=self.tenant_id, time=when, type=self.type,
            data=self.data, trace_id=self.trace_id,
        )


class EventLog:
    """Batched, bounded-retention event log with replay by id."""

    PAGE = 1000
    MAX_PENDING = 100_000  # beyond this (database down for long) the oldest unwritten events are dropped

    def __init__(self, db: Database, *, retention_hours: float, flush_ms: int) -> None:
        self.db = db
        self.retention = timedelta(hours=retention_hours)
        self.flush_s = flush_ms / 1000
        self._pending: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._last_prune = 0.0
        self.dropped = 0
        self.written = 0

    def append(self, event: Event) -> None:
        """Queue ``event`` for writing (a bus tap: synchronous, never blocks)."""
        if not event.tenant:
            return  # system events have no tenant, hence no reader allowed to replay them
        if len(self._pending) >= self.MAX_PENDING:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(event)
        if len(self._pending) >= self.PAGE:
            self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="vsm-event-log-writer")

    async def aclose(self) -> None:
        """Stop the writer after a last flush."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
                if time.monotonic() - self._last_prune > 60:
                    await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be down: keep the batch, retry next round
                log.warning("event log flush failed; will retry", exc_info=True)
                await asyncio.sleep(self.flush_s)

    async def flush(self) -> int:
        """Write everything pending now; returns the number of rows written.

        Serialised: two overlapping flushes would both write the same batch and then both drop
        it from ``_pending`` — the second dropping events it never wrote."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> int:
        if not self._pending:
            return 0
        batch = list(self._pending)
        by_tenant: dict[str, dict[str, Event]] = {}
        for event in batch:
            by_tenant.setdefault(event.tenant, {})[event.id] = event
        insert = pg_insert if self.db.is_postgres else sqlite_insert
        # ON CONFLICT DO NOTHING: a retried batch, or a second log on the same bus, never fails a flush.
        stmt = insert(EventRecord.__table__).on_conflict_do_nothing(index_elements=["id"])  # type: ignore[attr-defined]
        now = datetime.now(UTC)
        for tenant, events in by_tenant.items():
            rows = [
                {"id": e.id, "tenant_id": tenant, "created_at": now, "updated_at": now, "topic": e.topic,
                 "type": e.type, "time": e.time, "trace_id": e.trace_id, "data": e.data}
                for e in events.values()
            ]
            async with self.db.tenant(tenant) as s:
                await s.execute(stmt, rows)
        # Only now drop them from pending: replay reads pending until the rows are visible.
        for _ in batch:
            self._pending.popleft()
        self.written += len(batch)
        return len(batch)

    async def prune(self, now: datetime | None = None) -> int:
        """Delete rows older than the retention window, tenant by tenant (RLS-friendly)."""
        self._last_prune = time.monotonic()
        cutoff = (now or datetime.now(UTC)) - self.retention
        async with self.db.system() as s:
            tenants = [r[0] for r in (await s.execute(text("SELECT id FROM tenants"))).all()]
        removed = 0
        for tenant in tenants:
            async with self.db.tenant(tenant) as s:
                result = await s.execute(
                    delete(EventRecord).where(EventRecord.created_at < cutoff)  # type: ignore[arg-type]
                )
                removed += int(getattr(result, "rowcount", 0) or 0)
        return removed

    async def replay(
        self, tenant: str, after_id: str, patterns: Sequence[str], *, limit: int = 10_000
    ) -> list[Event]:
        """Events of ``tenant`` with id > ``after_id`` matching ``patterns``, oldest first."""
        found: dict[str, Event] = {}
        cursor = after_id
        while len(found) < limit:
            async with self.db.tenant(tenant) as s:
                stmt = (
                    select(EventRecord)
                    .where(EventRecord.id > cursor)
                    .order_by(EventRecord.id)
                    .limit(self.PAGE)
                )
                rows = list((await s.execute(stmt)).scalars())
            for row in rows:
                if topic_matches_any(patterns, row.topic):
                    found[row.id] = row.to_event()
            if len(rows) < self.PAGE:
                break
            cursor = rows[-1].id
        for event in list(self._pending):
            if event.tenant == tenant and event.id > after_id and topic_matches_any(patterns, event.topic):
                found.setdefault(event.id, event)
        return [found[k] for k in sorted(found)][:limit]


def topic_matches_any(patterns: Sequence[str], topic: str) -> bool:
    from vsm_mcp.bus import topic_matches

    return any(topic_matches(p, topic) for p in patterns)
