"""`vsm-mcp worker --queues notify,policy` as its own process, in the production topology
(PostgreSQL for data and workflows, RabbitMQ for the bus): a tool event published by another
process (the router's role here) is judged by the worker's policy evaluator, its violation routed
by the worker's notifier, and one durable delivery reaches a local Telegram Bot API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.asgi_server import serve_asgi
from tests.conftest import RABBITMQ_URL
from tests.fakes.telegram_api import FakeTelegram
from tests.integration.workers.conftest import Env
from tests.integration.workers.test_policy_audit import NO_DELETE, call, put
from tests.procs import stop, until
from vsm_mcp.workers.notify.channels import ChannelStore

pytestmark = [pytest.mark.anyio, pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]


def start_worker(env_vars: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "vsm_mcp.cli", "worker", "--queues", "notify,policy"],
            env={**os.environ, "PYTHONPATH": str(ROOT), **env_vars}, start_new_session=True,
            stdout=out, stderr=subprocess.STDOUT,
        )


def read(log: Path) -> str:
    return log.read_text(errors="replace")


async def drop_queues(*names: str) -> None:
    import aio_pika

    conn = await aio_pika.connect(RABBITMQ_URL)
    try:
        channel = await conn.channel()
        for name in names:
            await channel.queue_delete(name)
    finally:
        await conn.close()


async def test_worker_process_judges_routes_and_delivers(pg_env: Env, pg_migrated: tuple[str, str],
                                                         tmp_path: Path) -> None:
    from vsm_mcp.bus.amqp import AmqpBus
    from vsm_mcp.config import load_settings
    from vsm_mcp.db import Database
    from vsm_mcp.tenants import create_tenant

    owner_url, app_url = pg_migrated
    env = pg_env
    owner = Database(load_settings(database_url=owner_url), owner_url)
    await create_tenant(owner, "default")  # the worker's local principal; vsm_app may not create tenants
    await owner.aclose()
    await put(env, env.a, "nodelete", NO_DELETE)
    await ChannelStore(env.db).add(env.a, "security", "telegram", {"chat_id": 9}, ["policy.violation"])
    tag = uuid.uuid4().hex[:8]
    queues = (f"workers.policy.t{tag}", f"workers.notify.t{tag}")
    manifest = tmp_path / "none.yaml"
    manifest.write_text("upstreams: []\n")
    tg = FakeTelegram()
    bus = AmqpBus(RABBITMQ_URL)
    await bus.start()
    log = tmp_path / "worker.log"
    try:
        async with serve_asgi(tg.app()) as url:
            proc = start_worker({
                "VSM_HOME": str(tmp_path / ".vsm"), "VSM_DATABASE_URL": app_url,
                "VSM_MIGRATION_DATABASE_URL": owner_url, "VSM_BUS_URL": RABBITMQ_URL, "VSM_MANIFESTS": str(manifest),
                "VSM_POLICY_AUDIT_QUEUE": queues[0], "VSM_NOTIFY_QUEUE": queues[1],
                "VSM_TELEGRAM_API_BASE": url, "VSM_TELEGRAM_BOT_TOKEN": tg.token,
            }, log)
            try:
                await until(lambda: "vsm-mcp worker" in read(log), proc, log, timeout=90, what="the worker's banner",
                            interval=0.1)
                await bus.publish(call(env.a, "storage_get"))  # allowed: nothing to say
                await bus.publish(call(env.a, "storage_delete"))  # the router let it through; policy says no
                for _ in range(600):
                    if tg.sent:
                        break
                    await asyncio.sleep(0.1)
                assert [m["chat"]["id"] for m in tg.sent] == [9], read(log)[-3000:]
                assert tg.sent[0]["text"].startswith("[POLICY] nodelete/no_delete on storage_delete")
            finally:
                stop(proc, timeout=30)
    finally:
        await bus.aclose()
        await drop_queues(*queues)
