"""``/v1/events`` in the whole router app (as ``vsm-mcp serve`` mounts it, behind the Host/Origin
guard and the edge rate limit) takes the direct-write path under uvicorn + httptools."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.edge.conftest import SseReader
from tests.integration.router.conftest import serve_router
from vsm_mcp.bus.events import Event

pytestmark = pytest.mark.anyio


async def test_events_in_the_router_app_use_direct_writes() -> None:
    async with serve_router([]) as (base, app), httpx.AsyncClient(base_url=base, timeout=30) as h:
        tenant = await app.state.ctx.default_tenant_id()
        async with h.stream("GET", "/v1/events?topics=t.%23") as resp:
            reader = SseReader(resp)
            assert (await reader.next()).data == "connected"
            e = Event(topic="t.x", tenant=tenant)
            await app.state.ctx.bus.publish(e)
            assert (await reader.next_event()).id == e.id
        hub = app.state.edge.hub
        assert (hub.direct_connections, hub.asgi_connections) == (1, 0)
