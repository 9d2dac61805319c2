"""SIGKILL during a large put (file backend): the old object or none, never part of one, and the
next start leaves no temp file behind. Run in a real subprocess, killed mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from tests.integration.databases import copy_migrated
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database
from vsm_mcp.models import utcnow
from vsm_mcp.storage import StorageService
from vsm_mcp.storage.file import TMP_PREFIX, FileStorage
from vsm_mcp.storage.lifecycle import sweep_bucket

ROOT = Path(__file__).resolve().parents[3]
OLD = b"old complete object\n" * 1000

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from vsm_mcp.storage.file import FileStorage

    async def body():
        for i in range(100_000):  # ~100 GiB: never finishes before the kill
            if i == 8:
                print("STREAMING", flush=True)
            yield b"N" * (1024 * 1024)
            await asyncio.sleep(0.01 if i >= 8 else 0)

    asyncio.run(FileStorage(sys.argv[1]).put("dir/obj", body()))
    """
)

SERVICE_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from vsm_mcp.config import load_settings
    from vsm_mcp.db import Database
    from vsm_mcp.storage import StorageService
    from vsm_mcp.tenants import get_tenant

    async def body():
        for i in range(100_000):
            if i == 8:
                print("STREAMING", flush=True)
            yield b"N" * (1024 * 1024)
            await asyncio.sleep(0.01 if i >= 8 else 0)

    async def main():
        settings = load_settings(home=sys.argv[1], storage_url="file://" + sys.argv[2])
        svc = StorageService(settings, Database(settings))
        tenant = (await get_tenant(svc.db, "alpha")).id
        await svc.put(tenant, "b1", "obj", body())

    asyncio.run(main())
    """
)


def run_and_kill(code: str, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == b"STREAMING", line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def temp_files(root: Path) -> list[str]:
    return [f for _, _, files in os.walk(root) for f in files if f.startswith(TMP_PREFIX)]


@pytest.mark.slow
@pytest.mark.parametrize("had_old", [True, False])
def test_sigkill_mid_put_leaves_old_or_nothing(tmp_path: Path, had_old: bool) -> None:
    root = tmp_path / "objects"
    if had_old:
        anyio.run(FileStorage(root).put, "dir/obj", OLD)
    run_and_kill(WRITER, str(root))
    assert len(temp_files(root)) == 1  # the kill really hit mid-write
    path = root / "dir" / "obj"
    if had_old:
        assert path.read_bytes() == OLD
    else:
        assert not path.exists()
    restarted = FileStorage(root)  # the next start
    assert restarted.removed_orphans == 1 and temp_files(root) == []
    if had_old:
        assert anyio.run(restarted.get, "dir/obj") == OLD


@pytest.mark.slow
def test_sigkill_mid_service_put_keeps_the_old_object(storage_env_file: tuple[Path, Path, str]) -> None:
    home, root, tenant = storage_env_file

    async def put_old() -> None:
        svc = _service(home, root)
        try:
            await svc.put(tenant, "b1", "obj", OLD)
        finally:
            await _close(svc)

    anyio.run(put_old)
    run_and_kill(SERVICE_WRITER, str(home), str(root))
    assert len(temp_files(root)) == 1

    async def after_restart() -> None:
        svc = _service(home, root)
        try:
            svc.backend("default")  # the next start: temp files of the dead writer go
            assert temp_files(root) == []
            assert (await svc.read(tenant, "b1", "obj"))[1] == OLD
            await sweep_bucket(svc, tenant, "b1", now=utcnow())
            files = [f for _, _, fs in os.walk(root) for f in fs]
            assert len(files) == 1
        finally:
            await _close(svc)

    anyio.run(after_restart)


def _service(home: Path, root: Path) -> StorageService:
    settings = load_settings(home=home, storage_url=f"file://{root}")
    return StorageService(settings, Database(settings))


async def _close(svc: StorageService) -> None:
    await svc.aclose()
    await svc.db.aclose()


@pytest.fixture
def storage_env_file(tmp_path: Path, migrated_sqlite: Path) -> tuple[Path, Path, str]:
    from vsm_mcp.tenants import create_tenant

    home, root = copy_migrated(migrated_sqlite, tmp_path / ".vsm"), tmp_path / "objects"
    settings = load_settings(home=home)

    async def make() -> str:
        db = Database(settings)
        try:
            return (await create_tenant(db, "alpha")).id
        finally:
            await db.aclose()

    return home, root, anyio.run(make)
