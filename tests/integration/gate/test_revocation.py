"""`vsm-mcp keys revoke` on a running two-replica setup (PostgreSQL + RabbitMQ): the key gets 401
on both replicas within one second of the command returning."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import RABBITMQ_URL
from tests.integration.gate.procs import base_env, serving, vsm
from tests.ports import free_port
from tests.procs import wait_ready

pytestmark = [pytest.mark.anyio, pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow]


async def statuses(http: httpx.AsyncClient, urls: list[str], key: str) -> list[int]:
    rs = await asyncio.gather(*(http.get(f"{u}/v1/tools", headers={"authorization": f"Bearer {key}"}) for u in urls))
    return [r.status_code for r in rs]


async def test_revocation_reaches_both_replicas_within_a_second(tmp_path: Path, pg_owner_url: str, pg_app_url: str) -> None:
    env = base_env(tmp_path, VSM_BUS_URL=RABBITMQ_URL, VSM_DATABASE_URL=pg_app_url, VSM_MIGRATION_DATABASE_URL=pg_owner_url)
    assert vsm(["migrate"], env).returncode == 0
    assert vsm(["tenants", "create", "acme"], env).returncode == 0
    made = vsm(["keys", "create", "--tenant", "acme", "--scopes", "tools:call"], env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1].strip()
    listed = vsm(["keys", "list", "--tenant", "acme", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    (info,) = json.loads(listed.stdout)
    assert info["state"] == "active" and info["prefix"] == key[:10] and info["scopes"] == ["tools:call"]
    ports = free_port(), free_port()
    logs = tmp_path / "a.log", tmp_path / "b.log"
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    with serving(["--port", str(ports[0])], env, logs[0]) as a, serving(["--port", str(ports[1])], env, logs[1]) as b:
        await wait_ready(urls[0], a, logs[0], path="/healthz")
        await wait_ready(urls[1], b, logs[1], path="/healthz")
        async with httpx.AsyncClient(timeout=30) as http:
            assert await statuses(http, urls, key) == [200, 200]  # now cached on both replicas
            revoked = await asyncio.to_thread(vsm, ["keys", "revoke", info["id"]], env)
            done = time.monotonic()
            assert revoked.returncode == 0, revoked.stderr
            while (codes := await statuses(http, urls, key)) != [401, 401]:
                assert time.monotonic() - done < 1.0, codes
                await asyncio.sleep(0.02)
            took = time.monotonic() - done
    assert took < 1.0
    listed = json.loads(vsm(["keys", "list", "--tenant", "acme", "--json"], env).stdout)
    assert listed[0]["state"] == "revoked" and listed[0]["last_used_at"] is not None
