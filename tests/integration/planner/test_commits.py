"""Group commit (servers/planner/commits.py): every write gets its own result, bursts share
commits, and a write queued just as a drain finds the queue empty is not stranded (regression:
plan_resume hung after a restart)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
import sqlalchemy as sa

from servers.planner.commits import GroupCommit
from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_every_write_answers_and_bursts_share_commits(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / ".vsm")
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    db = Database(settings)
    commits = GroupCommit(db)
    executed: list[int] = []
    original = commits._execute

    async def counting(tenant: str, writes: list[object]) -> list[object]:
        executed.append(len(writes))
        return await original(tenant, writes)  # type: ignore[arg-type]

    commits._execute = counting  # type: ignore[method-assign]
    rng = random.Random(5)

    async def one(i: int) -> int:
        await asyncio.sleep(rng.random() * 0.02)  # arrivals land before, during and after commits
        return int(await commits.run("t", lambda conn: conn.execute(sa.text(f"SELECT {i}")).scalar_one()))

    try:
        got = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(300))), 60)
        assert got == list(range(300))
        assert sum(executed) == 300 and len(executed) < 300  # some writes shared a commit
        # a lone write after the burst still runs (no drain left behind thinking it is busy)
        assert await asyncio.wait_for(commits.run("t", lambda conn: 7), 10) == 7
    finally:
        commits.close()
        await db.aclose()
