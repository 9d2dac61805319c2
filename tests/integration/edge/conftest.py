"""Edge test harness: a real uvicorn server on 127.0.0.1 (SSE needs real streaming) around an
``Edge`` built exactly as router/app.py builds it, plus small SSE client helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware

from router.app import create_app
from router.edge._auth import bearer
from router.edge.assembly import Edge
from router.upstreams.manifest import UpstreamSpec
from tests.asgi_server import serve_asgi
from tests.gate_helpers import gated
from tests.polling import eventually
from vsm_mcp import migrate
from vsm_mcp.auth import Principal
from vsm_mcp.config import Settings, load_settings
from vsm_mcp.context import ServerContext
from vsm_mcp.keys import Authenticator
from vsm_mcp.tenants import create_api_key, create_tenant


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class EdgeApp:
    url: str
    edge: Edge
    ctx: ServerContext
    keys: dict[str, str] = field(default_factory=dict)  # tenant name -> API key
    tenants: dict[str, str] = field(default_factory=dict)  # tenant name -> id
    gate: Any = None

    def auth(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}


@asynccontextmanager
async def edge_app(
    settings: Settings | None = None, *, tenants: tuple[str, ...] = ("acme", "globex"),
    scopes: tuple[str, ...] = ("events:read", "tools:call"), middleware: list[Middleware] | None = None,
    check_path: bool = True, **edge_kwargs: Any,
) -> AsyncIterator[EdgeApp]:
    settings = settings or load_settings(allow_anonymous=False, sse_heartbeat_s=60)
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)  # it runs its own loop
    ctx = ServerContext.create(settings)
    keys, ids = {}, {}
    for name in tenants:
        ids[name] = (await create_tenant(ctx.db, name)).id
        keys[name], _ = await create_api_key(ctx.db, name, list(scopes))
    authenticator = Authenticator(ctx.db, default_tenant=settings.default_tenant, allow_anonymous=False)
    edge = Edge(settings, ctx, authenticate=bearer(authenticator), **edge_kwargs)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await ctx.bus.start()
        async with AsyncExitStack() as stack:
            stack.push_async_callback(ctx.aclose)
            await edge.start()
            stack.push_async_callback(edge.aclose)
            yield

    app = gated(Starlette(routes=edge.routes(), lifespan=lifespan, middleware=middleware), authenticator, settings)
    async with serve_asgi(app) as url:
        yield EdgeApp(url, edge, ctx, keys, ids, gate=app.state.gate)
    # Every stream took the write path the settings chose (uvicorn + httptools here, so the
    # direct path is reachable whenever it is enabled).
    hub = edge.hub
    assert not check_path or (hub.asgi_connections if settings.sse_direct_write else hub.direct_connections) == 0


@dataclass
class Running:
    """The whole router app (router/app.py) served on 127.0.0.1, with the tenant "acme" and a key of it."""

    url: str
    app: Any
    key: str
    tenant_id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def principal(self) -> Principal:
        return await self.app.state.authenticator.authenticate(self.auth["Authorization"])  # type: ignore[no-any-return]


@asynccontextmanager
async def router_app(settings: Settings, specs: list[UpstreamSpec],
                     scopes: tuple[str, ...] = ("events:read", "tools:call")) -> AsyncIterator[Running]:
    """``create_app`` on a migrated database with ``specs`` mounted, once every upstream is ready."""
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)  # it runs its own loop
    ctx = ServerContext.create(settings)
    tenant = await create_tenant(ctx.db, "acme")
    key, _ = await create_api_key(ctx.db, "acme", list(scopes))
    app = create_app(settings, ctx, specs=specs)
    async with serve_asgi(app) as url:
        await eventually(lambda: app.state.runtime.readiness()["ok"], what=f"upstreams {[s.name for s in specs]}")
        yield Running(url, app, key, tenant.id)


@pytest.fixture(params=["direct", "asgi"])
def sse_write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on both SSE write paths (``VSM_SSE_DIRECT_WRITE``); see router/edge/sse_direct.py."""
    monkeypatch.setenv("VSM_SSE_DIRECT_WRITE", "1" if request.param == "direct" else "0")
    return str(request.param)


@dataclass
class SseEvent:
    id: str = ""
    event: str = "message"
    data: str = ""


class SseReader:
    """A minimal SSE parser over an httpx streaming response (comments kept as ``event='comment'``)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 20) -> SseEvent:
        ev = SseEvent()
        got = False
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line == "":
                    if got:
                        return ev
                    continue
                got = True
                if line.startswith(":"):
                    return SseEvent(event="comment", data=line[1:].strip())
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "id":
                    ev.id = value
                elif name == "event":
                    ev.event = value
                elif name == "data":
                    ev.data = value
        raise EOFError("stream ended")

    async def next_event(self, timeout: float = 20, skip: Callable[[SseEvent], bool] | None = None) -> SseEvent:
        """The next real event, skipping comments (heartbeats, the connect notice)."""
        while True:
            ev = await self.next(timeout)
            if ev.event != "comment" and not (skip and skip(ev)):
                return ev
