"""Every route of router/app.py is rate-limited by the gate: a flood gets 429 + Retry-After naming
who was limited, for that principal (or anonymous address) only; the caller has one budget for
the edge routes and one for tool calls."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.router.conftest import serve_router
from vsm_mcp.tenants import create_api_key, create_tenant

pytestmark = pytest.mark.anyio

# Routes that are actions of their own share the caller's one edge budget (VSM_EDGE_RATE_*).
ROUTES = (("GET", "/v1/tools"), ("GET", "/v1/storage/docs"), ("GET", "/v1/storage/docs/a.txt"))


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
        async with from_address(base, "127.0.0.1") as h:
            acme = {"Authorization": f"Bearer {keys['acme']}"}
            codes = [(await h.request(method, path, headers=acme)).status_code for method, path in ROUTES]
            assert 429 not in codes, codes
            for method, path in ROUTES:  # one budget for all of them, spent
                flooded = await h.request(method, path, headers=acme)
                assert flooded.status_code == 429, path
                assert int(flooded.headers["retry-after"]) >= 1
                err = flooded.json()["error"]
                assert err["type"] == "rate_limited" and "(tenant acme)" in err["message"] and "API key" in err["limited"]
            # Tool calls have their own budget (VSM_RATE_LIMIT): a 404 for an unknown tool, not a 429.
            assert (await h.post("/v1/tools/none__such/call", json={}, headers=acme)).status_code == 404
            # Another principal on the same address, and an anonymous caller, are not affected.
            other = await h.get("/v1/tools", headers={"Authorization": f"Bearer {keys['globex']}"})
            assert other.status_code == 200
            codes = [(await h.get("/v1/tools")).status_code for _ in range(4)]
            assert codes == [200, 200, 200, 429]
            assert "anonymous caller at 127.0.0.1" in (await h.get("/v1/tools")).json()["error"]["message"]
        # Per address for anonymous callers: 127.0.0.2 has its own bucket.
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
            models = [(await h.get("/v1/models", headers=auth)).status_code for _ in range(2)]
            assert 429 not in models, models  # 403: this key has no llm scope, but it is counted
            for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions")):
                body = {"model": "m", "messages": []} if method == "POST" else None
                flooded = await h.request(method, path, headers=auth, json=body)
                assert flooded.status_code == 429, path
                assert int(flooded.headers["retry-after"]) >= 1
                err = flooded.json()["error"]
                assert (err["type"], err["code"]) == ("rate_limit_error", "rate_limited"), err
                assert {"message", "type", "param", "code"} <= set(err), err
