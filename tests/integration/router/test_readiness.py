"""/readyz degrades instead of failing (issue 19: one dead upstream made the whole gateway 503
while every other upstream served, so a load balancer would pull a working router)."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.router.conftest import serve_router, stdio_entry
from tests.ports import free_port

pytestmark = pytest.mark.anyio


def dead(required: bool = False) -> dict[str, object]:
    return {"name": "gone", "kind": "http", "url": f"http://127.0.0.1:{free_port()}/mcp", "required": required,
            "timeout": 2}


async def test_one_dead_optional_upstream_leaves_the_gateway_ready() -> None:
    async with serve_router([stdio_entry("s"), dead()], upstream_start_wait=3) as (base, _app):
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.get(f"{base}/readyz")
            body = r.json()
            assert r.status_code == 200, body
            assert body["ready"] is True and body["degraded"] is True
            ups = body["checks"]["upstreams"]
            assert ups["s"]["ok"] is True and ups["gone"]["ok"] is False and ups["gone"]["required"] is False
            assert "gone" in body["reason"]
            assert (await http.get(f"{base}/healthz")).json() == {"status": "ok"}


async def test_a_dead_required_upstream_makes_it_not_ready() -> None:
    async with serve_router([stdio_entry("s"), dead(required=True)], upstream_start_wait=3) as (base, _app):
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.get(f"{base}/readyz")
            assert r.status_code == 503
            assert r.json()["ready"] is False and "upstream gone" in r.json()["reason"]
