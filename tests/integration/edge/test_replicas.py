"""Two `vsm-mcp serve` processes on one RabbitMQ and one PostgreSQL: a tool call on replica A
reaches an SSE client of replica B, and B replays A's events after a reconnect."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import RABBITMQ_URL
from tests.integration.edge.conftest import SseReader
from tests.ports import free_port
from tests.procs import VSM, stop, tail, wait_ready

ROOT = Path(__file__).resolve().parents[3]
SECRET = "X-Telegram-Bot-Api-Secret-Token"



def start(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([str(VSM), "serve", "--port", str(port)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


async def call_echo(url: str, text: str) -> None:
    """One real dispatch on a replica, through its Telegram webhook (its reply goes nowhere)."""
    update = {"update_id": 1, "message": {"message_id": 1, "chat": {"id": 1}, "text": f'/call echo__echo {{"text": "{text}"}}'}}
    async with httpx.AsyncClient(timeout=30) as client:
        resp = await client.post(f"{url}/v1/telegram/webhook", json=update, headers={SECRET: "s"})
        assert resp.status_code == 200, resp.text


@pytest.mark.rabbitmq
@pytest.mark.postgres
@pytest.mark.slow
def test_event_published_on_one_replica_reaches_sse_on_the_other(
    tmp_path: Path, pg_owner_url: str, pg_app_url: str
) -> None:
    manifest = tmp_path / "echo.yaml"
    manifest.write_text(
        "upstreams:\n  - name: echo\n    kind: builtin\n    target: tests.integration.edge.echo_server:build\n"
    )
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "VSM_BUS_URL": RABBITMQ_URL, "VSM_DATABASE_URL": pg_app_url,
        "VSM_MIGRATION_DATABASE_URL": pg_owner_url, "VSM_MANIFESTS": str(manifest),
        "VSM_EVENT_LOG_FLUSH_MS": "50", "VSM_LOG_LEVEL": "warning",
        "VSM_TELEGRAM_SECRET": "s", "VSM_TELEGRAM_CHATS": "1=default",
        "VSM_TELEGRAM_API_BASE": f"http://127.0.0.1:{free_port()}",  # nothing listens: replies are dropped
    }
    ports = free_port(), free_port()
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs: list[subprocess.Popen[bytes]] = []

    async def scenario() -> None:
        procs.append(start(ports[0], env, logs[0]))
        await wait_ready(urls[0], procs[0], logs[0], timeout=60)  # A migrates first; B then finds the schema in place
        # Anonymous loopback callers act as the default tenant; the administrator creates it
        # (the app role vsm_app may not insert tenants).
        await asyncio.to_thread(
            subprocess.run, [str(VSM), "tenants", "create", "default"], env=env, check=True, capture_output=True
        )
        procs.append(start(ports[1], env, logs[1]))
        await wait_ready(urls[1], procs[1], logs[1], timeout=60)
        async with httpx.AsyncClient(base_url=urls[1], timeout=30) as b:
            async with b.stream("GET", "/v1/events", params={"topics": "tool.*"}) as resp:
                assert resp.status_code == 200
                reader = SseReader(resp)
                await call_echo(urls[0], "first")
                first = await reader.next_event(timeout=30)
                assert first.event == "tool.called"
                assert json.loads(first.data)["data"]["public_name"] == "echo__echo"
            await call_echo(urls[0], "second")  # while nobody listens on B
            headers = {"Last-Event-ID": first.id}
            async with b.stream("GET", "/v1/events", params={"topics": "tool.*"}, headers=headers) as resp:
                second = await SseReader(resp).next_event(timeout=30)
                assert second.event == "tool.called" and second.id > first.id

    try:
        asyncio.run(scenario())
    finally:
        stop(*procs)
        for log in logs:  # shown by pytest only when the test failed
            if log.exists():
                print(f"--- {log.name}\n{tail(log)}")
