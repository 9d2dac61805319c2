"""SSE zombies: a client that stops reading before it is far enough behind to overflow makes no
write progress; after VSM_SSE_STALL_S it is closed, with an alert.<tenant>.zombie event and a
metric, while the other clients go on."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.integration.edge.conftest import edge_app
from tests.integration.edge.test_sse_direct import open_raw
from tests.polling import eventually
from vsm_mcp.bus.events import Event
from vsm_mcp.config import load_settings

pytestmark = pytest.mark.anyio


async def test_a_connection_without_write_progress_is_closed_as_a_zombie() -> None:
    settings = load_settings(allow_anonymous=False, sse_heartbeat_s=60, sse_stall_s=1.0)
    async with edge_app(settings) as app:
        acme = app.tenants["acme"]
        hub = app.edge.hub
        alerts = await app.ctx.bus.subscribe(["alert.#"])
        port = int(app.url.rsplit(":", 1)[1])
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", port))
        stuck.sendall(f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {app.keys['acme']}\r\n\r\n".encode())
        fast, = await open_raw(app, 1)
        await eventually(lambda: hub.connections == 2, what="both clients")

        def pending() -> int:
            conns = [c for g in hub._conns.get(acme, {}).values() for c in g if c.writer is not None]
            return max((c.writer.buffered() for c in conns if c.writer is not None), default=0)

        sent = 0
        while pending() == 0 and sent < 400:  # until the stuck client's socket stops taking bytes
            await app.ctx.bus.publish(Event(topic="load.x", tenant=acme, data={"i": sent, "pad": "x" * 16_000}))
            sent += 1
            await eventually(lambda n=sent: len(fast.ids()) == n, what="the fast client to keep up")  # type: ignore[misc]
        assert pending() > 0 and not any(c.overflowed for g in hub._conns[acme].values() for c in g)

        alert = await asyncio.wait_for(anext(aiter(alerts)), 30)
        assert alert.topic == f"alert.{acme}.zombie" and alert.data["kind"] == "sse"
        assert "no write progress" in alert.data["reason"]
        await eventually(lambda: hub.connections == 1, what="the stuck client to be dropped")
        assert hub.zombies == 1 and app.edge.metrics.zombies.labels("sse", acme)._value.get() == 1
        e = Event(topic="load.x", tenant=acme, data={"after": True})
        await app.ctx.bus.publish(e)
        await eventually(lambda: fast.ids()[-1:] == [e.id], what="the other client to go on")
        stuck.close()
        await alerts.aclose()
