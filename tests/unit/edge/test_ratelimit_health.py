"""Edge rate limiting and readiness, driven through httpx.ASGITransport."""

from __future__ import annotations

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from router.edge.health import readyz_endpoint
from router.gate.ratelimit import RateLimitMiddleware, client_key
from vsm_mcp.bus import MemoryBus
from vsm_mcp.bus.amqp import AmqpBus
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database
from vsm_mcp.telemetry import Metrics

pytestmark = pytest.mark.anyio


async def ok(_request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def test_rate_limit_per_ip_and_per_key() -> None:
    metrics = Metrics()
    app = RateLimitMiddleware(Starlette(routes=[Route("/", ok)]), rate=0.001, burst=2, metrics=metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        codes = [(await client.get("/")).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = await client.get("/")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "rate_limited" and "address" in r.json()["error"]["message"]
        keyed = {"Authorization": "Bearer vsm_a"}
        assert [(await client.get("/", headers=keyed)).status_code for _ in range(3)] == [200, 200, 429]
        other = {"Authorization": "Bearer vsm_b"}
        assert (await client.get("/", headers=other)).status_code == 200
    assert b'vsm_rate_limited_total{where="edge"} 3.0' in metrics.render()


def test_client_key_hides_the_credential() -> None:
    key = client_key({"type": "http", "headers": [(b"authorization", b"Bearer vsm_secret")], "client": ("1.2.3.4", 1)})
    assert key.startswith("key:") and "secret" not in key
    assert client_key({"type": "http", "headers": [], "client": ("1.2.3.4", 1)}) == "ip:1.2.3.4"


async def test_readyz_names_what_is_not_ready() -> None:
    settings = load_settings()
    db = Database(settings, "postgresql+asyncpg://nobody@127.0.0.1:1/none")  # nothing listens on port 1
    bus = AmqpBus("amqp://guest:guest@127.0.0.1:1/")  # never started
    app = Starlette(routes=[Route("/readyz", readyz_endpoint(db, bus, lambda: {"ok": False, "upstreams": {
        "x": {"ok": False, "state": "failed", "error": "cannot build"}}}, timeout=5))])
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            r = await client.get("/readyz")
    finally:
        await db.aclose()
    assert r.status_code == 503
    body = r.json()
    assert not body["checks"]["database"]["ok"] and not body["checks"]["bus"]["ok"]
    assert body["reason"].startswith("database: ")
    assert "bus: not connected" in body["reason"] and "upstream x: failed cannot build" in body["reason"]


async def test_readyz_ok_on_embedded_defaults() -> None:
    from vsm_mcp import migrate

    settings = load_settings()
    await anyio.to_thread.run_sync(migrate.upgrade, settings.migration_database_url)
    db = Database(settings)
    app = Starlette(routes=[Route("/readyz", readyz_endpoint(db, MemoryBus()))])
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            r = await client.get("/readyz")
    finally:
        await db.aclose()
    assert r.status_code == 200 and r.json()["ready"] is True and "reason" not in r.json()
