"""Readiness, driven through httpx.ASGITransport (the edge's rate limits are the gate's: tests/unit/gate)."""

from __future__ import annotations

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from router.edge.health import readyz_endpoint
from vsm_mcp.bus import MemoryBus
from vsm_mcp.bus.amqp import AmqpBus
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database

pytestmark = pytest.mark.anyio


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
