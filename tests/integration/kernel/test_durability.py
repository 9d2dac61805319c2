"""A writer killed with SIGKILL mid-stream loses nothing it had acknowledged (both backends)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import select

from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database
from vsm_mcp.models import Episode
from vsm_mcp.tenants import create_tenant

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from vsm_mcp.config import load_settings
    from vsm_mcp.db import Database
    from vsm_mcp.models import Episode

    async def main(url, tenant):
        db = Database(load_settings(database_url=url), url)
        i = 0
        while True:
            row = Episode(server="dur", tool=f"t{i}", outcome="ok")
            async with db.tenant(tenant) as s:
                s.add(row)
            # acknowledged: the transaction has committed
            sys.stdout.write(row.id + "\\n"); sys.stdout.flush()
            i += 1

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.fixture(params=["sqlite", "postgres"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'dur.db'}"
        return url, url
    return request.getfixturevalue("pg_owner_url"), request.getfixturevalue("pg_app_url")


def test_acknowledged_writes_survive_sigkill(urls: tuple[str, str], tmp_path: Path) -> None:
    owner_url, app_url = urls
    migrate.upgrade(owner_url)
    settings = load_settings(database_url=app_url, migration_database_url=owner_url)

    async def make_tenant() -> str:
        db = Database(settings, owner_url)
        try:
            return (await create_tenant(db, "durable")).id
        finally:
            await db.aclose()

    tenant = asyncio.run(make_tenant())
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), app_url, tenant],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    acked: list[str] = []
    assert proc.stdout is not None
    try:
        while len(acked) < 150:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"writer exited early: {proc.stderr.read() if proc.stderr else ''}")
            acked.append(line.strip())
        proc.send_signal(signal.SIGKILL)  # mid-stream: it is writing the next row right now
        proc.wait(timeout=30)
        # Lines written before the kill that we hadn't read yet were acknowledged too.
        acked += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()

    async def stored() -> set[str]:
        db = Database(settings, app_url)
        try:
            async with db.tenant(tenant) as s:
                return set((await s.execute(select(Episode.id))).scalars())
        finally:
            await db.aclose()

    present = asyncio.run(stored())
    missing = [i for i in acked if i not in present]
    assert not missing, f"{len(missing)} acknowledged writes lost"
    assert proc.returncode == -signal.SIGKILL
