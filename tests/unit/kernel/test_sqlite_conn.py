"""SQLite connections whose close cannot hang: the race SQLAlchemy's terminate() meets in
aiosqlite 0.22 (a force stop while a graceful close runs), on real connections."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import text

from vsm_mcp.config import load_settings
from vsm_mcp.db import make_engine
from vsm_mcp.sqlite_conn import StopOnceConnection, self_check, sqlite_creator

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def close_during_force_stop(conn: aiosqlite.Connection) -> asyncio.Task[None]:
    """What terminate() does: a graceful close starts, then the connection is force-stopped."""
    closing = asyncio.create_task(conn.close())
    await asyncio.sleep(0)  # the close is queued on the worker
    conn.stop()
    await asyncio.wait({closing}, timeout=5)
    return closing


async def test_plain_aiosqlite_close_hangs_after_a_force_stop(tmp_path: Path) -> None:
    """The defect this module exists for: if this starts passing, aiosqlite fixed it."""
    conn = await aiosqlite.connect(tmp_path / "a.db")
    closing = await close_during_force_stop(conn)
    assert not closing.done()
    closing.cancel()


async def test_our_connection_closes_after_a_force_stop(tmp_path: Path) -> None:
    conn = await sqlite_creator(str(tmp_path / "a.db"), timeout=5)()
    closing = await close_during_force_stop(conn)
    assert closing.done() and closing.exception() is None
    assert not conn._thread.is_alive() or await asyncio.to_thread(conn._thread.join, 5) is None


async def test_the_engine_uses_it_with_daemon_workers(tmp_path: Path) -> None:
    assert self_check() is None  # the tested aiosqlite is installed: the fast path is engaged
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", load_settings(home=tmp_path))
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"  # pragmas still run
            raw = (await conn.get_raw_connection()).driver_connection
            assert isinstance(raw, StopOnceConnection) and raw._thread.daemon
    finally:
        await engine.dispose()
