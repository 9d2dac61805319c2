"""``GET /healthz`` (the process answers) and ``GET /readyz`` (it can serve).

Ready means the gateway can serve: the database answers, the bus is connected, and every
upstream marked ``required: true`` in its manifest is ready. Any other upstream being down only
*degrades* it (``degraded: true``, still 200): its tools are unavailable while the rest serve,
and a load balancer must not pull a router that works for everything else. Each upstream's
state is in ``checks.upstreams``; ``reason`` names every failing check either way, so an
operator (or a load balancer's log) sees why without digging. Not ready → 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from vsm_mcp.bus import Bus
from vsm_mcp.db import Database

Readiness = Callable[[], dict[str, Any]]


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _bus_health(bus: Bus, timeout: float) -> tuple[bool, str]:
    try:
        async with asyncio.timeout(timeout):
            return await bus.health()
    except TimeoutError:
        return False, f"no answer within {timeout:.0f}s"


def readyz_endpoint(db: Database, bus: Bus, upstreams: Readiness | None = None, *, timeout: float = 2.0) -> Any:
    """The ``GET /readyz`` handler over the given checks."""

    async def readyz(_request: Request) -> JSONResponse:
        (db_ok, db_detail), (bus_ok, bus_detail) = await asyncio.gather(
            db.health(timeout), _bus_health(bus, timeout)
        )
        checks: dict[str, Any] = {
            "database": {"ok": db_ok, "detail": db_detail},
            "bus": {"ok": bus_ok, "detail": bus_detail},
        }
        reasons = [f"{name}: {c['detail']}" for name, c in checks.items() if not c["ok"]]
        ready = not reasons
        degraded = False
        if upstreams is not None:
            summary = upstreams()
            ups = summary.get("upstreams", {})
            checks["upstreams"] = ups
            for name, st in ups.items():
                if not st.get("ok", False):
                    degraded = True
                    required = bool(st.get("required", False))
                    ready = ready and not required
                    what = "required upstream" if required else "upstream"
                    reasons.append(f"{what} {name}: {st.get('state', '?')} {st.get('error', '')}".strip())
        body: dict[str, Any] = {"ready": ready, "degraded": degraded, "checks": checks}
        draining = {n: st["draining"] for n, st in checks.get("upstreams", {}).items() if st.get("draining")}
        if draining:  # zombie sessions being drained (router/upstreams/zombie.py): serving goes on without them
            body["draining"] = draining
        if reasons:
            body["reason"] = "; ".join(reasons)
        return JSONResponse(body, status_code=200 if ready else 503)

    return readyz
