"""A process delivering a notification is SIGKILLed, then started again: DBOS resumes the
delivery and the remote still gets the message once — whether the kill came during the backoff
wait (it is sent after the restart) or after the message left (it becomes 'uncertain', never a
second copy)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.asgi_server import serve_asgi
from tests.fakes.telegram_api import FakeTelegram
from tests.integration.workers.conftest import Env
from tests.procs import kill, until
from vsm_mcp.workers.notify import ledger
from vsm_mcp.workers.notify.channels import ChannelStore

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]


def start(env_vars: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The delivery process, in its own process group (killed whole), output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.workers.delivery_child"],
            env={**os.environ, "PYTHONPATH": str(ROOT), **env_vars}, start_new_session=True,
            stdout=out, stderr=subprocess.STDOUT,
        )


@asynccontextmanager
async def child(env_vars: dict[str, str], log: Path) -> AsyncIterator[subprocess.Popen[bytes]]:
    proc = start(env_vars, log)
    try:
        yield proc
    finally:
        kill(proc)


async def until_state(env: Env, key: str, state: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async def reached() -> bool:
        row = await ledger.get(env.db, env.a, key)
        return row is not None and row.state == state

    await until(reached, proc, log, timeout=30, what=f"the delivery to become {state}", interval=0.1)


async def setup(env: Env, tmp_path: Path, tg: FakeTelegram, url: str, **settings: str) -> tuple[dict[str, str], str]:
    ch = await ChannelStore(env.db).add(env.a, "ops", "telegram", {"chat_id": 42}, ["alert.#"])
    key = f"{ch.id}:alert-1"
    spec = {"tenant_id": env.a, "key": key, "channel_id": ch.id, "topic": "alert.t.error_rate", "event_id": "e1",
            "message": {"subject": "s", "text": "pager: error rate", "payload": {}}}
    env_vars = {"VSM_HOME": str(tmp_path / ".vsm"), "VSM_TELEGRAM_API_BASE": url,
                "VSM_TELEGRAM_BOT_TOKEN": tg.token, "TEST_DELIVERY": json.dumps(spec), **settings}
    return env_vars, key


@pytest.mark.slow
async def test_killed_during_the_backoff_wait_sends_once_after_restart(sqlite_env: Env, tmp_path: Path) -> None:
    tg = FakeTelegram()
    tg.fail_next = [(503, None)]
    async with serve_asgi(tg.app()) as url:
        env_vars, key = await setup(sqlite_env, tmp_path, tg, url, VSM_NOTIFY_BACKOFF_S="3")
        log = tmp_path / "child.log"
        async with child(env_vars, log) as proc:
            await until(lambda: len(tg.calls) == 1, proc, log, timeout=30)  # the 503: now it sleeps 3 s, durably
            await asyncio.sleep(0.3)
            os.killpg(proc.pid, signal.SIGKILL)
        row = await ledger.get(sqlite_env.db, sqlite_env.a, key)
        assert row is not None and row.state == "retrying" and tg.sent == []
        async with child(env_vars, log) as proc:  # DBOS resumes the wait, then sends
            await until_state(sqlite_env, key, "sent", proc, log)
    row = await ledger.get(sqlite_env.db, sqlite_env.a, key)
    assert len(tg.calls) == 2 and len(tg.sent) == 1
    assert row is not None and row.state == "sent" and row.attempts == 2


@pytest.mark.slow
async def test_killed_after_the_message_left_is_never_sent_twice(sqlite_env: Env, tmp_path: Path) -> None:
    tg = FakeTelegram()
    tg.hold = asyncio.Event()  # Telegram has the message; its answer never reaches the sender
    async with serve_asgi(tg.app()) as url:
        env_vars, key = await setup(sqlite_env, tmp_path, tg, url, VSM_NOTIFY_TIMEOUT_S="0.5")
        log = tmp_path / "child.log"
        async with child(env_vars, log) as proc:
            await until(lambda: len(tg.sent) == 1, proc, log, timeout=30)
            os.killpg(proc.pid, signal.SIGKILL)
        tg.hold.set()
        async with child(env_vars, log) as proc:  # recovery: the step runs again, finds the row 'sending' …
            await until_state(sqlite_env, key, "uncertain", proc, log)
    row = await ledger.get(sqlite_env.db, sqlite_env.a, key)
    assert row is not None and row.state == "uncertain"  # … and, once it is stale, gives up on it
    assert len(tg.calls) == 1 and len(tg.sent) == 1  # one copy, never two
