"""``/v1/tools`` and ``/v1/storage`` sit behind the edge rate limit as mounted by router/app.py:
a flood gets 429 + Retry-After for that principal (or address) only."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.router.conftest import serve_router
from vsm_mcp.tenants import create_api_key, create_tenant

pytestmark = pytest.mark.anyio

# One bucket per route.
ROUTES = (("GET", "/v1/tools"), ("POST", "/v1/tools/none__such/call"), ("GET", "/v1/storage/docs"),
          ("GET", "/v1/storage/docs/a.txt"))


def from_address(base: str, address: str) -> httpx.AsyncClient:
    """A client whose connections come from ``address`` (any of 127/8 reaches a loopback bind)."""
    return httpx.AsyncClient(base_url=base, timeout=30, transport=httpx.AsyncHTTPTransport(local_address=address))


async def test_tools_and_storage_flood_gets_429_per_principal_and_per_address() -> None:
    async with serve_router([], edge_rate_per_s=0.001, edge_rate_burst=3) as (base, app):
        db = app.state.ctx.db
        keys = {}
        for name in ("acme", "globex"):
            await create_tenant(db, name)
            keys[name], _ = await create_api_key(db, name, ["tools:call", "storage:read"])
        for method, path in ROUTES:
            async with from_address(base, "127.0.0.1") as h:
                acme = {"Authorization": f"Bearer {keys['acme']}"}
                codes = [(await h.request(method, path, headers=acme)).status_code for _ in range(3)]
                assert 429 not in codes, (path, codes)
                flooded = await h.request(method, path, headers=acme)
                assert flooded.status_code == 429, path
                assert int(flooded.headers["retry-after"]) >= 1
                assert flooded.json()["error"]["type"] == "rate_limited"
                # Another principal on the same address, and an anonymous caller, are not affected.
                other = await h.request(method, path, headers={"Authorization": f"Bearer {keys['globex']}"})
                assert other.status_code != 429, path
                assert (await h.request(method, path)).status_code != 429, path
        # Per address for anonymous callers: 127.0.0.1 spent its burst above; 127.0.0.2 has its own.
        async with from_address(base, "127.0.0.1") as h:
            codes = [(await h.get("/v1/tools")).status_code for _ in range(3)]
            assert codes[-1] == 429
        async with from_address(base, "127.0.0.2") as h:
            assert (await h.get("/v1/tools")).status_code == 200


async def test_openai_routes_flood_gets_429_in_openai_shape() -> None:
    """The OpenAI-compatible routes are edge endpoints too; their 429 speaks OpenAI's error shape."""
    async with serve_router([], edge_rate_per_s=0.001, edge_rate_burst=2) as (base, app):
        db = app.state.ctx.db
        await create_tenant(db, "acme")
        key, _ = await create_api_key(db, "acme", ["tools:call"])
        auth = {"Authorization": f"Bearer {key}"}
        async with from_address(base, "127.0.0.1") as h:
            for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions")):
                body = {"model": "m", "messages": []} if method == "POST" else None

                async def send(method: str = method, path: str = path, body: object = body) -> httpx.Response:
                    return await h.request(method, path, headers=auth, json=body)

                codes = [(await send()).status_code for _ in range(2)]
                assert 429 not in codes, (path, codes)
                flooded = await send()
                assert flooded.status_code == 429, path
                assert int(flooded.headers["retry-after"]) >= 1
                err = flooded.json()["error"]
                assert (err["type"], err["code"]) == ("rate_limit_error", "rate_limited"), err
                assert {"message", "type", "param", "code"} <= set(err), err
