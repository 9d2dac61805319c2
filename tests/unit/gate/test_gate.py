"""The gate in front of a small Starlette app: order of the steps, what each refuses, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from router.gate.browser import BrowserRules
from router.gate.gate import Gate
from router.gate.limits import LocalLimiter
from router.gate.route import JSONRPC, TOOL_CALL, gated_mount, gated_route, principal, ungated_routes
from vsm_mcp.auth import Principal
from vsm_mcp.errors import PolicyDenied, Unauthorized
from vsm_mcp.hooks import CallInfo, CallOutcome

pytestmark = pytest.mark.anyio

KEYS = {
    "Bearer reader": Principal("t1", frozenset({"storage:read"}), key_id="k-read", tenant_name="acme"),
    "Bearer writer": Principal("t1", frozenset({"storage:write", "storage:read"}), key_id="k-write", tenant_name="acme"),
}
ANON = Principal("t0", frozenset({"tools:call"}), tenant_name="default")


async def authenticate(authorization: str | None, *, anonymous: bool) -> Principal:
    if authorization is None:
        if anonymous:
            return ANON
        raise Unauthorized("an API key is required")
    if authorization not in KEYS:
        raise Unauthorized("invalid or revoked API key")
    return KEYS[authorization]


class DenyDeletes:
    def __init__(self) -> None:
        self.seen: list[CallInfo] = []

    async def authorize(self, call: CallInfo) -> None:
        self.seen.append(call)
        if call.tool == "storage_delete":
            raise PolicyDenied("denied by policy 'no-deletes' rule 'r1': deletes are off")


class Episodes:
    def __init__(self) -> None:
        self.rows: list[tuple[CallInfo, CallOutcome]] = []

    def record(self, call: CallInfo, outcome: CallOutcome) -> None:
        self.rows.append((call, outcome))


effects: list[str] = []


async def get_obj(request: Request) -> Response:
    p = await principal(request)
    return JSONResponse({"tenant": p.tenant_id, "key": request.path_params["key"]})


async def delete_obj(request: Request) -> Response:
    effects.append("deleted " + request.path_params["key"])
    return Response(status_code=204)


async def mcp(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    p = (scope.get("state") or {}).get("principal")
    await JSONResponse({"principal": p.id if p else None})(scope, receive, send)  # type: ignore[arg-type]


def make_app(rate: float = 1000, burst: float = 1000, cors: tuple[str, ...] = ()) -> tuple[Starlette, DenyDeletes, Episodes]:
    routes = [
        gated_route("/v1/storage/{bucket}/{key:path}", get_obj, methods=["GET"], capability="storage:read",
                    action="storage__storage_get"),
        gated_route("/v1/storage/{bucket}/{key:path}", delete_obj, methods=["DELETE"], capability="storage:write",
                    action="storage__storage_delete"),
        gated_route("/mcp", mcp, methods=["POST", "GET"], capability=TOOL_CALL, render=JSONRPC, asgi=True),
        gated_mount("/messages/", mcp, capability=TOOL_CALL),
        Route("/healthz", lambda r: JSONResponse({"ok": True}), name="healthz"),
    ]
    app = Starlette(routes=routes)
    policy, episodes = DenyDeletes(), Episodes()
    app.state.gate = Gate(
        rules=BrowserRules(loopback_bind=True, cors_origins=cors), authenticate=authenticate,
        limiter=LocalLimiter(rate, burst), authorizers=[policy], recorder=episodes,
    )
    return app, policy, episodes


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, DenyDeletes, Episodes]]:
    effects.clear()
    app, policy, episodes = make_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8765") as c:
        yield c, policy, episodes


async def test_route_table_walker_finds_ungated_routes() -> None:
    app, _, _ = make_app()
    assert ungated_routes(app.routes) == []
    app.routes.append(Route("/v1/sneaky", get_obj))
    app.routes.append(Mount("/sub", routes=[Route("/inner", get_obj)]))
    assert ungated_routes(app.routes) == ["/v1/sneaky (get_obj)", "/sub/inner (get_obj)"]


async def test_declaration_needs_an_action() -> None:
    with pytest.raises(ValueError, match="action"):
        gated_route("/x", get_obj, methods=["GET"], capability="storage:read")
    with pytest.raises(ValueError, match="capability"):
        gated_route("/x", get_obj, methods=["GET"], capability="", action="a__b")


async def test_scopes_of_the_declared_capability(client: tuple[httpx.AsyncClient, DenyDeletes, Episodes]) -> None:
    c, _, _ = client
    r = await c.get("/v1/storage/b/k", headers={"authorization": "Bearer reader"})
    assert r.status_code == 200 and r.json() == {"tenant": "t1", "key": "k"}
    r = await c.delete("/v1/storage/b/k", headers={"authorization": "Bearer reader"})
    assert r.status_code == 403 and "storage:write" in r.json()["error"]["message"]
    assert effects == []


async def test_policy_sees_the_route_as_its_tool(client: tuple[httpx.AsyncClient, DenyDeletes, Episodes]) -> None:
    c, policy, episodes = client
    r = await c.delete("/v1/storage/b/dir/k", headers={"authorization": "Bearer writer"})
    assert r.status_code == 403 and r.json()["error"]["type"] == "policy_denied"
    assert effects == []
    call = policy.seen[-1]
    assert (call.server, call.tool, call.public_name) == ("storage", "storage_delete", "storage__storage_delete")
    assert call.arguments == {"bucket": "b", "key": "dir/k"} and call.tags == ("storage:write",)
    assert episodes.rows[-1][1].outcome == "policy_denied"


async def test_audit_episode_per_action(client: tuple[httpx.AsyncClient, DenyDeletes, Episodes]) -> None:
    c, _, episodes = client
    await c.get("/v1/storage/b/k", headers={"authorization": "Bearer reader"})
    call, outcome = episodes.rows[-1]
    assert call.public_name == "storage__storage_get" and call.source == "http" and outcome.outcome == "ok"
    assert call.principal.key_id == "k-read"


async def test_tool_call_routes_are_authenticated_only(client: tuple[httpx.AsyncClient, DenyDeletes, Episodes]) -> None:
    c, policy, episodes = client
    r = await c.post("/mcp", json={}, headers={"authorization": "Bearer reader"})
    assert r.json() == {"principal": "k-read"}
    r = await c.post("/messages/?session_id=x", json={})
    assert r.json() == {"principal": "anonymous"}
    assert policy.seen == [] and episodes.rows == []  # per call, in the dispatcher
    r = await c.post("/mcp", json={}, headers={"authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == -32001  # JSON-RPC shape
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_anonymous_only_for_a_direct_loopback_peer() -> None:
    app, _, _ = make_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.1.2.3", 5000)),
                                 base_url="http://127.0.0.1:8765") as c:
        assert (await c.post("/mcp", json={})).status_code == 401
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8765") as c:
        assert (await c.post("/mcp", json={})).status_code == 200
        for header in ("x-forwarded-for", "forwarded", "x-real-ip"):
            r = await c.post("/mcp", json={}, headers={header: "203.0.113.9"})
            assert r.status_code == 401, header


async def test_429_names_who_and_retry_after() -> None:
    app, _, _ = make_app(rate=0.5, burst=2)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8765") as c:
        codes = [(await c.get("/v1/storage/b/k", headers={"authorization": "Bearer reader"})).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = await c.get("/v1/storage/b/k", headers={"authorization": "Bearer reader"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "API key k-read (tenant acme)" in r.json()["error"]["message"]
        assert r.json()["error"]["limited"] == "API key k-read (tenant acme)"
        # another key has its own bucket; the anonymous peer too, named by address
        assert (await c.get("/v1/storage/b/k", headers={"authorization": "Bearer writer"})).status_code == 200
        for _ in range(2):
            await c.post("/mcp", json={})
        r = await c.post("/mcp", json={})
        assert r.status_code == 429 and "anonymous caller at 127.0.0.1" in r.json()["error"]["message"]


async def test_forged_origin_and_simple_bodies_leave_no_side_effect(
    client: tuple[httpx.AsyncClient, DenyDeletes, Episodes],
) -> None:
    c, _, _ = client
    evil = {"origin": "http://evil.example.com", "authorization": "Bearer writer"}
    assert (await c.delete("/v1/storage/b/k", headers=evil)).status_code == 403
    assert (await c.get("/v1/storage/b/k", headers={"host": "evil.example.com",
                                                   "authorization": "Bearer reader"})).status_code == 403
    assert (await c.post("/mcp", content=b"{}", headers={"content-type": "text/plain"})).status_code == 403
    form = await c.post("/mcp", data={"a": "b"})
    assert form.status_code == 403 and form.json()["error"]["code"] == -32003
    assert effects == []


async def test_cors_preflight_only_for_listed_origins() -> None:
    app, _, _ = make_app(cors=("https://app.example.com",))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8765") as c:
        ask = {"access-control-request-method": "DELETE", "access-control-request-headers": "authorization"}
        r = await c.options("/v1/storage/b/k", headers={"origin": "https://app.example.com", **ask})
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "DELETE" in r.headers["access-control-allow-methods"]
        r = await c.options("/v1/storage/b/k", headers={"origin": "https://evil.example.com", **ask})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
        r = await c.get("/v1/storage/b/k", headers={"origin": "https://app.example.com", "authorization": "Bearer reader"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example.com"
        # a refusal after the browser rules is readable by the allowed page (it can say why), not by others
        r = await c.get("/v1/storage/b/k", headers={"origin": "https://app.example.com", "authorization": "Bearer nope"})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "https://app.example.com"
        r = await c.get("/v1/storage/b/k", headers={"origin": "https://evil.example.com", "authorization": "Bearer nope"})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
        assert effects == []


async def test_route_without_a_gate_fails_closed() -> None:
    app = Starlette(routes=[gated_route("/x", get_obj, methods=["GET"], capability="storage:read", action="a__b")])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://127.0.0.1") as c:
        assert (await c.get("/x")).status_code == 500
