"""ASGI assembly: one Starlette app with the MCP endpoints, the edge routes and the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vsm_mcp.config import Settings
from vsm_mcp.context import ServerContext


def create_app(settings: Settings, ctx: ServerContext | None = None) -> Starlette:
    ctx = ctx or ServerContext.create(settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await ctx.bus.start()
        try:
            yield
        finally:
            await ctx.aclose()

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> JSONResponse:
        ok, detail = await ctx.db.health()
        checks = {"database": {"ok": ok, "detail": detail}}
        status = 200 if ok else 503
        return JSONResponse({"ready": ok, "checks": checks}, status_code=status)

    app = Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz)], lifespan=lifespan)
    app.state.ctx = ctx
    return app
