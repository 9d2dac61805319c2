"""The durable event log on SQLite and on PostgreSQL (RLS, as the non-owner app role)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.databases import create_tenant_as_owner
from vsm_mcp.bus.events import Event, EventLog
from vsm_mcp.db import Database

pytestmark = pytest.mark.anyio

# settings and db (SQLite, then PostgreSQL as vsm_app): tests/integration/conftest.py


async def test_append_flush_replay_after_id(db: Database) -> None:
    t1 = (await create_tenant_as_owner(db, "one")).id
    t2 = (await create_tenant_as_owner(db, "two")).id
    log = EventLog(db, retention_hours=1, flush_ms=50)
    events = [Event(topic=f"tool.{'called' if i % 2 else 'failed'}", tenant=t1, data={"i": i}) for i in range(30)]
    other = Event(topic="tool.called", tenant=t2)
    for e in [*events[:20], other]:
        log.append(e)
    assert await log.flush() == 21
    for e in events[20:]:
        log.append(e)  # still pending: replay must see these too

    got = await log.replay(t1, events[4].id, ["tool.*"])
    assert [e.id for e in got] == [e.id for e in events[5:]]
    assert got[0] == events[5]  # the envelope round-trips through the table
    only_called = await log.replay(t1, "", ["tool.called"])
    assert [e.data["i"] for e in only_called] == list(range(1, 30, 2))
    assert [e.id for e in await log.replay(t2, "", ["#"])] == [other.id]  # tenants never mix
    assert [e.id for e in await log.replay(t1, "", ["#"], limit=3)] == [e.id for e in events[:3]]


async def test_system_events_are_not_logged(db: Database) -> None:
    log = EventLog(db, retention_hours=1, flush_ms=50)
    log.append(Event(topic="sys.x"))
    assert await log.flush() == 0


async def test_prune_removes_only_old_rows(db: Database) -> None:
    t = (await create_tenant_as_owner(db, "p")).id
    log = EventLog(db, retention_hours=1, flush_ms=50)
    old, new = Event(topic="a", tenant=t), Event(topic="a", tenant=t)
    log.append(old)
    log.append(new)
    await log.flush()
    assert await log.prune(now=datetime.now(UTC)) == 0
    assert await log.prune(now=datetime.now(UTC) + timedelta(hours=2)) == 2
    assert await log.replay(t, "", ["#"]) == []


async def test_writer_task_flushes_in_background(db: Database) -> None:
    import asyncio

    t = (await create_tenant_as_owner(db, "bg")).id
    log = EventLog(db, retention_hours=1, flush_ms=20)
    await log.start()
    try:
        log.append(Event(topic="a", tenant=t))
        for _ in range(1000):  # up to 20 s on a loaded machine
            await asyncio.sleep(0.02)
            if log.written:
                break
    finally:
        await log.aclose()
    assert log.written == 1


async def test_two_logs_on_one_database_never_fail_on_the_same_event(db: Database) -> None:
    t = (await create_tenant_as_owner(db, "dup")).id
    a = EventLog(db, retention_hours=1, flush_ms=50)
    b = EventLog(db, retention_hours=1, flush_ms=50)
    e = Event(topic="x", tenant=t)
    for log in (a, b, a):
        log.append(e)
    assert await a.flush() == 2
    assert await b.flush() == 1
    assert [r.id for r in await a.replay(t, "", ["#"])] == [e.id]


async def test_overlapping_flushes_write_every_event_once(db: Database) -> None:
    """Two flushes at once (the writer task and an explicit flush) must not drop events that
    were appended while the first one was writing."""
    import asyncio

    t1 = (await create_tenant_as_owner(db, "one")).id
    log = EventLog(db, retention_hours=1, flush_ms=50)
    first = [Event(topic="tool.called", tenant=t1, data={"i": i}) for i in range(200)]
    for e in first:
        log.append(e)
    flushing = asyncio.ensure_future(log.flush())
    await asyncio.sleep(0)  # the first flush has taken its batch and is writing
    late = [Event(topic="tool.called", tenant=t1, data={"i": 200 + i}) for i in range(50)]
    for e in late:
        log.append(e)
    written = sum(await asyncio.gather(flushing, log.flush()))
    assert written == 250 and log.written == 250
    replayed = await log.replay(t1, "", ["#"])
    assert [e.data["i"] for e in replayed] == list(range(250))
