"""CEP rules and timers in the database, on SQLite and on PostgreSQL as the non-owner app role
(row-level security): write-behind upserts and deletes, re-arming after a restart, tenants apart."""

from __future__ import annotations

import asyncio
import time

import pytest

from servers.cep.engine import rule_version
from servers.cep.runtime import CepRuntime
from servers.cep.store import CepStore, RuleDef
from tests.integration.databases import create_tenant_as_owner
from vsm_mcp.bus import MemoryBus
from vsm_mcp.bus.events import Event
from vsm_mcp.db import Database

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# settings and db (SQLite, then PostgreSQL as vsm_app): tests/integration/conftest.py


async def test_timers_are_written_behind_and_rearmed_after_a_restart(db: Database) -> None:
    t1, t2 = (await create_tenant_as_owner(db, "one")).id, (await create_tenant_as_owner(db, "two")).id
    store = CepStore(db)
    source = "job.started -> not job.finished for 1s by data.job"
    rule = RuleDef(t1, "stuck", source, rule_version(source))
    await store.put_rule(rule)
    first = CepRuntime(MemoryBus(), store, flush_s=0.05)
    started = Event(topic="job.started", tenant=t1, data={"job": "a"})
    async with first.running():
        await first.bus.publish(started)
        await first.bus.publish(Event(topic="job.started", tenant=t2, data={"job": "a"}))  # no rule for t2
        await first.drain()
        for _ in range(200):
            if await store.timers(t1):
                break
            await asyncio.sleep(0.02)
    rows = await store.timers(t1)
    assert [(r.rule, r.state["values"], r.deadline) for r in rows] == [("stuck", ["a"], started.time.timestamp() + 1)]
    assert await store.timers(t2) == []
    assert time.time() < rows[0].deadline, "the restart must come before the deadline"

    second = CepRuntime(MemoryBus(), store, flush_s=0.05)
    matches = await second.bus.subscribe(["cep.match.#"])
    async with second.running():
        m = await asyncio.wait_for(anext(aiter(matches)), 15)
        assert m.tenant == t1 and m.data["time"] == rows[0].deadline and m.data["key"] == ["a"]
        for _ in range(200):
            if not await store.timers(t1):
                break
            await asyncio.sleep(0.02)
        assert await store.timers(t1) == []  # fired: its row is gone
    # A changed rule does not resume the old text's timers.
    await store.put_rule(RuleDef(t1, "stuck", source.replace("1s", "2s"), rule_version(source.replace("1s", "2s"))))
    assert [r.source for r in await store.rules(t1)] == [source.replace("1s", "2s")]
    assert await store.rules(t2) == []
    await matches.aclose()
