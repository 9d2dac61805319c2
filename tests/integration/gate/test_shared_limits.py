"""Two router processes sharing Redis: one key's budget is spent across both, not once per replica."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.integration.gate.procs import base_env, serving, vsm
from tests.ports import free_port
from tests.procs import wait_ready

pytestmark = [pytest.mark.anyio, pytest.mark.redis]
REDIS_URL = "redis://127.0.0.1:6379/0"


async def test_two_replicas_share_one_bucket(tmp_path: Path) -> None:
    rate = 5  # requests/s per key on tool-call routes, burst 5: ~10 requests in the first second
    env = base_env(tmp_path, VSM_REDIS_URL=REDIS_URL, VSM_TOOL_ROUTE_RATE_PER_S=str(rate),
                   VSM_TOOL_ROUTE_RATE_BURST=str(rate), VSM_RATE_LIMIT="1000")
    assert vsm(["migrate"], env).returncode == 0
    assert vsm(["tenants", "create", "acme"], env).returncode == 0
    made = vsm(["keys", "create", "--tenant", "acme", "--scopes", "tools:call"], env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1].strip()
    ports = free_port(), free_port()
    logs = tmp_path / "a.log", tmp_path / "b.log"
    with serving(["--port", str(ports[0])], env, logs[0]) as a, serving(["--port", str(ports[1])], env, logs[1]) as b:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        await wait_ready(urls[0], a, logs[0], path="/healthz")
        await wait_ready(urls[1], b, logs[1], path="/healthz")
        headers = {"authorization": f"Bearer {key}"}
        body = {"arguments": {"text": "x"}}
        async with httpx.AsyncClient(timeout=30) as http:
            loop = asyncio.get_running_loop()
            started = loop.time()
            # 2 x the first second's budget at once, alternating replicas
            replies = await asyncio.gather(*(
                http.post(f"{urls[i % 2]}/v1/tools/echo__echo/call", json=body, headers=headers) for i in range(4 * rate)
            ))
            elapsed = loop.time() - started
    codes = [r.status_code for r in replies]
    assert set(codes) <= {200, 429}, codes
    passed = codes.count(200)
    # Shared: the burst plus what refilled while they ran (about half of the 20 when they take ~1 s).
    # Each replica on its own would pass its burst and refill twice over: all 20 within ~1 s.
    assert rate <= passed <= rate + rate * elapsed + 1, (codes, elapsed)
    assert passed < 4 * rate, codes
    refused = [r for r in replies if r.status_code == 429]
    assert {str(r.url).split("/v1")[0] for r in refused} == set(urls)  # both replicas refused some
    r = refused[-1]
    assert int(r.headers["retry-after"]) >= 1 and "API key" in r.json()["error"]["message"]
