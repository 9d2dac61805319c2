"""The shared PostgreSQL cache: row-level security per tenant, and single-flight across replicas."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from servers.llm_cdn.cache import Entry, PostgresBackend
from servers.llm_cdn.engine import Engine
from servers.llm_cdn.models_config import load_models
from servers.llm_cdn.providers import Providers
from tests.integration.llm_cdn.conftest import make_settings
from tests.integration.llm_cdn.fake_openai import FakeState
from vsm_mcp import migrate
from vsm_mcp.bus import MemoryBus
from vsm_mcp.db import Database

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]
Fakes = tuple[str, FakeState, str, FakeState]
TA, TB = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"


@pytest.fixture
def pg(pg_owner_url: str, pg_app_url: str) -> str:
    migrate.upgrade(pg_owner_url)
    return pg_app_url


def _replica(fakes: Fakes, url: str) -> Engine:
    settings = make_settings(fakes, database_url=url)
    db = Database(settings)
    backend = PostgresBackend(db, settings.llm_cache_max_bytes)
    return Engine(settings, MemoryBus(), backend, Providers(load_models(settings.llm_models), settings))


def _chat(text: str) -> dict[str, Any]:
    return {"model": "main", "messages": [{"role": "user", "content": text}], "temperature": 0}


async def test_two_replicas_share_cache_and_single_flight(pg: str, fakes: Fakes) -> None:
    r1, r2 = _replica(fakes, pg), _replica(fakes, pg)
    fakes[1].latency_s = 0.5
    outs = await asyncio.gather(*(r.complete(TA, _chat("same")) for r in (r1, r2) for _ in range(50)))
    assert fakes[1].calls["main"] == 1
    assert {o.body["choices"][0]["message"]["content"] for o in outs} == {"main says: same [call 1]"}
    assert (await r2.complete(TA, _chat("same"))).cache == "hit"
    other = await r1.complete(TB, _chat("same"))  # another tenant: RLS hides TA's row
    assert other.cache == "miss" and fakes[1].calls["main"] == 2
    for r in (r1, r2):
        await r.aclose()
        await r.backend.db.aclose()  # type: ignore[attr-defined]


async def test_rls_purge_and_size_bound(pg: str, fakes: Fakes) -> None:
    settings = make_settings(fakes, database_url=pg)
    db = Database(settings)
    b = PostgresBackend(db, max_bytes=20_000)
    now = time.time()
    for i in range(40):
        await b.put(TA, f"k{i:02d}", Entry({"t": "x" * 1000}, "m", "chat", now + i, now + 3600, 1))
    await b.put(TB, "k00", Entry({"t": "b"}, "m", "chat", now, now + 3600, 1))
    kept = [i for i in range(40) if await b.get(TA, f"k{i:02d}") is not None]
    assert kept and len(kept) < 40 and kept[-1] == 39  # bounded; newest kept
    assert (await b.get(TB, "k00")) is not None and (await b.get(TB, "k39")) is None
    assert await b.purge(TA, "m", None) == len(kept)
    assert (await b.get(TB, "k00")) is not None
    expired = Entry({"t": "old"}, "m", "chat", now - 10, now - 1, 1)
    await b.put(TA, "old", expired)
    assert await b.get(TA, "old") is None
    await db.aclose()


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE 'llm_%'")
    finally:
        await conn.close()
    return {r[0] for r in rows}


def test_migration_downgrade_is_clean(pg_owner_url: str) -> None:
    migrate.upgrade(pg_owner_url)
    assert asyncio.run(_tables(pg_owner_url)) == {"llm_cache", "llm_inflight"}
    migrate.downgrade(pg_owner_url, "0004_llm_cache@-1")  # only this branch steps down
    assert asyncio.run(_tables(pg_owner_url)) == set()
    migrate.upgrade(pg_owner_url)
    assert asyncio.run(_tables(pg_owner_url)) == {"llm_cache", "llm_inflight"}
