"""The durable spine (vsm_mcp.durable): launch/destroy, queues, recovery after SIGKILL on SQLite,
recovery of a dead executor's work by another process on PostgreSQL, clear start-up errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dbos import DBOS

from tests.integration.kernel.durable_flows import executions, fan, hold, runners
from tests.procs import VSM, kill, until
from vsm_mcp import durable
from vsm_mcp.config import load_settings
from vsm_mcp.errors import ConfigError, DatabaseUnavailable

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_workflow_runs_through_a_declared_queue(durable_spine: durable.Spine, tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    handle = await durable.queue("test_flows").enqueue_async(fan, log, 3)
    assert await handle.get_result() == ["first", "m0", "m1", "m2", "last"]
    assert durable.current() is durable_spine
    assert [e["executor_id"] for e in durable_spine.live_executors()] == ["test"]


async def test_relaunch_in_one_process(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / ".vsm")
    for n in range(2):
        async with durable.Spine(settings).running():
            handle = await DBOS.start_workflow_async(fan, str(tmp_path / f"log{n}"), 1)
            assert len(await handle.get_result()) == 3
    with pytest.raises(ConfigError, match="not running"):
        durable.current()


async def test_second_launch_and_unknown_queue_are_refused(durable_spine: durable.Spine, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="already running"):
        await durable.Spine(load_settings(home=tmp_path / "other")).start()
    with pytest.raises(ConfigError, match="unknown queue 'nope'; declared queues: .*test_flows"):
        durable.queue("nope")


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    settings = load_settings(dbos_database_url="postgresql://vsm@127.0.0.1:1/vsm")
    with pytest.raises(DatabaseUnavailable) as info:
        durable.Spine(settings).launch()
    message = info.value.message
    assert message.startswith("cannot reach the workflow database at postgresql+psycopg://vsm@127.0.0.1:1/vsm: ")
    assert "\n" not in message


def test_unknown_listen_queue_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown queue 'mail'"):
        durable.Spine(load_settings(home=tmp_path), queues=["mail"]).launch()


def _spawn(target: str, executor: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.kernel.durable_flows", target, executor, str(log)],
        cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=(log.parent / "child.err").open("wb"),
    )


async def _wait_lines(log: Path, n: int, proc: subprocess.Popen[bytes]) -> None:
    await until(lambda: len(executions(str(log))) >= n, proc, log.parent / "child.err", timeout=30,
                what=f"{n} step executions")


async def _result_of_only_workflow() -> list[str]:
    for _ in range(400):
        rows = await DBOS.list_workflows_async(name=fan.__qualname__)
        if rows and rows[0].status == "SUCCESS":
            return list(rows[0].output)
        await asyncio.sleep(0.05)
    raise AssertionError(f"workflow did not finish: {rows}")


async def test_sigkill_mid_fanout_resumes_on_relaunch_sqlite(tmp_path: Path) -> None:
    home, log = tmp_path / ".vsm", tmp_path / "log"
    hold(str(log), True)
    proc = _spawn(str(home), "local", log)
    try:
        await _wait_lines(log, 4, proc)  # first + the three held fan-out steps
    finally:
        kill(proc)
    hold(str(log), False)
    async with durable.Spine(load_settings(home=home), role="local").running():
        assert await _result_of_only_workflow() == ["first", "m0", "m1", "m2", "last"]
    runs = executions(str(log))
    assert runs.count("first") == 1  # completed before the crash: never again
    assert sorted(runs) == sorted(["first", "m0", "m1", "m2", "m0", "m1", "m2", "last"])


@pytest.mark.postgres
async def test_dead_executor_is_swept_by_another_process_postgres(
    tmp_path: Path, pg_owner_url: str, pg_app_url: str
) -> None:
    from vsm_mcp import migrate

    await asyncio.to_thread(migrate.upgrade, pg_owner_url)
    settings = load_settings(database_url=pg_app_url, migration_database_url=pg_owner_url, dbos_executor_lease_s=1)
    await asyncio.to_thread(durable.migrate_system_database, settings)
    log = tmp_path / "log"
    hold(str(log), True)
    proc = _spawn(pg_app_url, "doomed", log)
    try:
        await _wait_lines(log, 4, proc)
    finally:
        kill(proc)
    hold(str(log), False)
    started = time.monotonic()
    async with durable.Spine(settings, role="survivor").running() as spine:
        assert spine.executor_id != "doomed"
        assert await _result_of_only_workflow() == ["first", "m0", "m1", "m2", "last"]
        assert time.monotonic() - started < 60
    assert executions(str(log)).count("first") == 1


def _worker(settings_env: dict[str, str], manifest: Path, log: Path, n: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **settings_env}
    return subprocess.Popen(
        [str(VSM), "worker", "--queues", "test_flows", "--manifest", str(manifest)],
        cwd=log.parent, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=(log.parent / f"worker{n}.err").open("wb"),
    )


@pytest.mark.postgres
async def test_two_workers_one_dies_the_other_finishes_postgres(
    tmp_path: Path, pg_owner_url: str, pg_app_url: str
) -> None:
    from vsm_mcp import migrate

    await asyncio.to_thread(migrate.upgrade, pg_owner_url)
    await _default_tenant(pg_owner_url)  # the app role may not create tenants
    manifest = tmp_path / "flows.yaml"
    manifest.write_text(
        "upstreams:\n  - {name: flows, kind: builtin, target: 'tests.integration.kernel.durable_flows:build_builtin'}\n"
    )
    env = {"VSM_DATABASE_URL": pg_app_url, "VSM_MIGRATION_DATABASE_URL": pg_owner_url,
           "VSM_DBOS_EXECUTOR_LEASE_S": "1", "VSM_EMBEDDER": "hash", "VSM_HOME": str(tmp_path / ".vsm")}
    log = tmp_path / "log"
    hold(str(log), True)
    workers = [_worker(env, manifest, log, n) for n in range(2)]
    settings = load_settings(database_url=pg_app_url, migration_database_url=pg_owner_url)
    try:
        # This process only enqueues (it listens to no queue); the workers run the workflow.
        async with durable.Spine(settings, role="client", queues=[]).running():
            await durable.queue("test_flows").enqueue_async(fan, str(log), 3)
            await _wait_lines(log, 4, workers[0])
            (busy,) = runners(str(log))
            victim = next(w for w in workers if w.pid == busy)
            kill(victim)
            hold(str(log), False)
            assert await _result_of_only_workflow() == ["first", "m0", "m1", "m2", "last"]
        survivor = next(w for w in workers if w is not victim)
        assert runners(str(log)) == {busy, survivor.pid}
        assert executions(str(log)).count("first") == 1
    finally:
        for w in workers:
            if w.poll() is None:
                kill(w)


async def _default_tenant(owner_url: str) -> None:
    from vsm_mcp.db import Database
    from vsm_mcp.tenants import ensure_tenant

    db = Database(load_settings(database_url=owner_url))
    try:
        await ensure_tenant(db, "default")
    finally:
        await db.aclose()


def test_worker_with_an_unknown_queue_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(VSM), "worker", "--queues", "nope"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "VSM_HOME": str(tmp_path / ".vsm"), "VSM_EMBEDDER": "hash"},
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: unknown queue 'nope'; declared queues:"), proc.stderr
    assert "Traceback" not in proc.stderr
