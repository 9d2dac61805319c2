"""router/recorder.py with the episode journal: an episode is on disk when ``record`` returns
(before the answer leaves), the journal empties once the database has the rows, and neither a
full queue nor a failed database write loses an episode any more (issue 19)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from sqlalchemy import text

from router.recorder import Recorder
from vsm_mcp import migrate
from vsm_mcp.audit import AuditQuery, read_episodes
from vsm_mcp.auth import Principal
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database
from vsm_mcp.hooks import CallInfo, CallOutcome
from vsm_mcp.journal import read_rows

pytestmark = pytest.mark.anyio
P = Principal(tenant_id="t", scopes=frozenset({"*"}), key_id="k")


def record(rec: Recorder, i: int) -> None:
    rec.record(CallInfo(P, f"s__t{i}", "s", f"t{i}", {"i": i}, trace_id=f"{i:032x}"),
               CallOutcome(outcome="ok", duration_ms=1.0))


async def episodes(db: Database) -> list[str]:
    page = await read_episodes(db, AuditQuery(tenant="t", limit=1000))
    return sorted(e["trace_id"] for e in page.episodes)


async def db_at(tmp_path: Path, migrated: bool = True) -> Database:
    settings = load_settings(home=tmp_path / "home")
    if migrated:
        await anyio.to_thread.run_sync(migrate.upgrade, settings.migration_database_url)
    return Database(settings)


async def test_journalled_before_record_returns_and_emptied_after_the_flush(tmp_path: Path) -> None:
    db = await db_at(tmp_path)
    rec = Recorder(db, [], interval=3600, batch=1000, journal_dir=tmp_path / "journal")
    try:
        async with anyio.create_task_group() as tg:
            await rec.start(tg)
            assert rec.journal is not None
            await anyio.sleep(0.1)  # the writer has drained its (empty) queue and sleeps for `interval`
            for i in range(5):
                record(rec, i)
            assert [r["trace_id"] for r in read_rows(rec.journal.path)] == [f"{i:032x}" for i in range(5)]
            assert await episodes(db) == []  # not flushed yet: only the journal has them
            path = rec.journal.path
            await rec.aclose()
        assert await episodes(db) == [f"{i:032x}" for i in range(5)]
        assert rec.written == 5 and rec.lost == 0 and not path.exists()  # caught up: nothing to keep
    finally:
        await db.aclose()


async def test_overflow_is_replayed_from_the_journal(tmp_path: Path) -> None:
    db = await db_at(tmp_path)
    rec = Recorder(db, [], interval=3600, batch=1000, capacity=4, journal_dir=tmp_path / "journal")
    try:
        async with anyio.create_task_group() as tg:
            await rec.start(tg)
            for i in range(10):
                record(rec, i)
            assert rec.dropped == 6 and rec.lost == 0
            await rec.aclose()
        assert await episodes(db) == [f"{i:032x}" for i in range(10)]
        assert rec.recovered == 6
    finally:
        await db.aclose()


async def test_database_down_then_back_loses_nothing(tmp_path: Path) -> None:
    db = await db_at(tmp_path, migrated=False)  # no episodes table: every write fails
    rec = Recorder(db, [], interval=0.05, batch=1000, journal_dir=tmp_path / "journal")
    try:
        async with anyio.create_task_group() as tg:
            await rec.start(tg)
            for i in range(3):
                record(rec, i)
            for _ in range(500):
                if rec.dropped >= 3:
                    break
                await anyio.sleep(0.02)
            assert rec.dropped == 3 and rec.lost == 0
            await anyio.to_thread.run_sync(migrate.upgrade, db.settings.migration_database_url)
            for _ in range(200):
                if rec.recovered >= 3:
                    break
                await anyio.sleep(0.05)
            assert rec.recovered == 3
            record(rec, 3)
            await rec.aclose()
        assert await episodes(db) == [f"{i:032x}" for i in range(4)]
    finally:
        await db.aclose()


async def test_without_a_database_nothing_is_journalled(tmp_path: Path) -> None:
    rec = Recorder(None, [], journal_dir=tmp_path / "journal")
    async with anyio.create_task_group() as tg:
        await rec.start(tg)
        record(rec, 1)
        await rec.aclose()
    assert rec.journal is None and not (tmp_path / "journal").exists()


async def test_sqlite_file_is_untouched_by_a_failed_replay(tmp_path: Path) -> None:
    """A journal that cannot be replayed at start (database down) is kept for the next start."""
    db = await db_at(tmp_path, migrated=False)
    jdir = tmp_path / "journal"
    first = Recorder(db, [], interval=3600, journal_dir=jdir)
    async with anyio.create_task_group() as tg:
        await first.start(tg)
        record(first, 7)
        await first.aclose()
    kept = list(jdir.glob("episodes.*.jsonl"))
    assert len(kept) == 1  # the write failed: the rows stay on disk
    async with db.engine.begin() as conn:  # still no schema
        assert (await conn.execute(text("select count(*) from sqlite_master where name='episodes'"))).scalar() == 0
    await anyio.to_thread.run_sync(migrate.upgrade, db.settings.migration_database_url)
    second = Recorder(db, [], interval=3600, journal_dir=jdir)
    async with anyio.create_task_group() as tg:
        await second.start(tg)  # replays the kept journal (its pid is ours, and it is not open)
        await second.aclose()
    assert second.recovered == 1 and await episodes(db) == [f"{7:032x}"]
    await db.aclose()
