"""vsm_mcp/journal.py and vsm_mcp/audit.py on a migrated SQLite file: a journal left by a dead
process is replayed once (no duplicates, torn last line skipped); the audit query filters,
pages without repeats and stays inside its tenant."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from vsm_mcp import migrate
from vsm_mcp.audit import AuditQuery, parse_since, read_episodes
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database
from vsm_mcp.errors import InvalidArguments
from vsm_mcp.journal import EpisodeJournal, encode, insert_missing, orphan_journals, read_rows, replay_orphans

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def row(i: int, tenant: str = "t1", tool: str = "add", outcome: str = "ok", at: float | None = None) -> list[object]:
    return [f"id-{tenant}-{i:05d}", tenant, at if at is not None else time.time() - 1000 + i, "p", "srv", tool,
            outcome, 1.5, "0" * 64, "", f"{i:032x}", {"source": "mcp", "public_name": f"srv__{tool}", "cached": False}]


async def migrated_db(tmp_path: Path) -> Database:
    settings = load_settings(home=tmp_path / "home")
    await anyio.to_thread.run_sync(migrate.upgrade, settings.database_url)
    return Database(settings)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def test_orphan_journal_is_replayed_once_and_removed(tmp_path: Path) -> None:
    db = await migrated_db(tmp_path)
    try:
        jdir = tmp_path / "journal"
        jdir.mkdir()
        orphan = jdir / f"episodes.{dead_pid()}.jsonl"
        lines = b"".join(encode(row(i)) for i in range(30))
        orphan.write_bytes(lines + encode(row(30))[:-9])  # killed mid-line: the torn row is skipped
        assert len(read_rows(orphan)) == 30
        await insert_missing(db, read_rows(orphan)[:10])  # 10 had reached the database before the crash
        mine = EpisodeJournal(jdir)  # our own open journal is never an orphan
        assert orphan_journals(jdir) == [orphan.resolve()]
        assert await replay_orphans(db, jdir) == 20
        assert not orphan.exists() and mine.path.exists()
        page = await read_episodes(db, AuditQuery(tenant="t1", limit=1000))
        assert len(page.episodes) == 30 and len({e["id"] for e in page.episodes}) == 30
        mine.close(keep=False)
        assert not mine.path.exists()
    finally:
        await db.aclose()


async def test_journal_append_survives_the_process(tmp_path: Path) -> None:
    """Appends are plain write(2)s: the bytes are in the file the moment append returns."""
    j = EpisodeJournal(tmp_path / "j")
    assert j.append(encode(row(1)))
    assert [r["id"] for r in read_rows(j.path)] == ["id-t1-00001"]
    assert j.size() > 0
    j.truncate()
    assert j.size() == 0
    j.close(keep=True)
    assert j.path.exists() and not j.append(encode(row(2)))
    os.unlink(j.path)


async def test_audit_filters_pages_and_tenants(tmp_path: Path) -> None:
    db = await migrated_db(tmp_path)
    try:
        now = time.time()
        rows = [row(i, tool="add" if i % 2 else "mul", outcome="ok" if i % 5 else "tool_error", at=now - 100 + i)
                for i in range(50)]
        rows += [row(i, tenant="t2", at=now) for i in range(7)]
        from vsm_mcp.journal import decode

        await insert_missing(db, [decode(encode(r)) for r in rows])  # type: ignore[misc]
        seen: list[str] = []
        cursor = None
        while True:
            page = await read_episodes(db, AuditQuery(tenant="t1", limit=7, cursor=cursor))
            seen += [e["id"] for e in page.episodes]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [f"id-t1-{i:05d}" for i in reversed(range(50))]  # newest first, no repeats or gaps
        adds = await read_episodes(db, AuditQuery(tenant="t1", tool="srv__add", limit=1000))
        assert len(adds.episodes) == 25 and {e["tool"] for e in adds.episodes} == {"add"}
        assert len((await read_episodes(db, AuditQuery(tenant="t1", tool="add", limit=1000))).episodes) == 25
        errs = await read_episodes(db, AuditQuery(tenant="t1", outcome="tool_error", limit=1000))
        assert len(errs.episodes) == 10
        recent = await read_episodes(db, AuditQuery(tenant="t1", since=parse_since("75s"), limit=1000))
        assert 20 <= len(recent.episodes) <= 40
        by_trace = await read_episodes(db, AuditQuery(tenant="t1", trace_id=f"{7:032x}"))
        assert [e["id"] for e in by_trace.episodes] == ["id-t1-00007"]
        other = await read_episodes(db, AuditQuery(tenant="t2", limit=1000))
        assert len(other.episodes) == 7 and {e["id"][:5] for e in other.episodes} == {"id-t2"}
        with pytest.raises(InvalidArguments, match="cursor"):
            await read_episodes(db, AuditQuery(tenant="t1", cursor="garbage!"))
        with pytest.raises(InvalidArguments, match="since"):
            parse_since("yesterday")
    finally:
        await db.aclose()
