"""Drive: a sync killed with SIGKILL between two pages resumes from the saved page token, with no
duplicate and no missed change (two processes on one SQLite home; DBOS resumes the workflow)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from tests.asgi_server import serve_asgi
from tests.fakes.cms_apis import FakeDrive

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]
N = 300


def saved_cursor(db: Path) -> dict[str, str] | None:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            row = conn.execute("SELECT cursor FROM connectors WHERE name = 'gd'").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return None
    return (json.loads(row[0]) or {}).get("c") if row and row[0] else None


async def spawn(*args: str, token: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSM_")}
    env |= {"PYTHONPATH": str(ROOT), "GDRIVE_TEST_TOKEN": token}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.connectors.drive_driver", *args, cwd=ROOT, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True)


@pytest.mark.slow  # two processes, each starting the whole stack
async def test_sigkill_between_pages_resumes_from_the_saved_page_token(tmp_path: Path) -> None:
    fake = FakeDrive()
    db = tmp_path / ".vsm" / "vsm.db"
    async with serve_asgi(fake.app()) as base:
        first = await spawn("first", str(tmp_path), base, token=fake.token)
        try:
            assert first.stdout is not None and first.stdin is not None
            line = await asyncio.wait_for(first.stdout.readline(), 120)
            assert line.strip() == b"ready", (line, await first.stderr.read() if first.stderr else b"")
            start = saved_cursor(db)
            assert start is not None and "token" in start
            ids = fake.seed(N)  # 300 new files after the start token: 6 pages of 50 changes
            fake.delay_s = 0.3
            first.stdin.write(b"go\n")
            await first.stdin.drain()
            deadline = time.monotonic() + 120
            while saved_cursor(db) in (None, start):  # killed once a page is saved, before the last
                assert first.returncode is None and time.monotonic() < deadline
                await asyncio.sleep(0.02)
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            await first.wait()
        at_kill = saved_cursor(db)
        assert at_kill is not None and at_kill != start and "token" in at_kill
        served_before = len(fake.change_pages)
        fake.delay_s = 0.0
        second = await spawn("resume", str(tmp_path), token=fake.token)
        out, err = await asyncio.wait_for(second.communicate(), 240)
        assert second.returncode == 0, err.decode()[-2000:]
        status = json.loads(out.decode().strip().splitlines()[-1])
    assert status["state"] == "idle" and status["last_error"] is None, status
    assert int(at_kill["token"]) < N, "the sync finished before it was killed"
    # the resumed sync asked Drive for the saved page token (the page in flight again), never the start
    resumed = fake.change_pages[served_before:]
    assert resumed and resumed[0] == at_kill["token"] and start["token"] not in resumed
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        sources = [r[0] for r in conn.execute("SELECT source FROM content_containers WHERE source LIKE 'gd:%'")]
        versions = conn.execute("SELECT count(*) FROM content_versions v JOIN content_containers c "
                                "ON c.id = v.container_id WHERE c.source LIKE 'gd:%'").fetchone()[0]
        items = conn.execute("SELECT count(*) FROM connector_items WHERE connector = 'gd'").fetchone()[0]
    finally:
        conn.close()
    assert sorted(sources) == sorted(f"gd:{i}" for i in ids)  # none missed, none twice
    assert versions == N and items == N
