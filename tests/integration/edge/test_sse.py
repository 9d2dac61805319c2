"""GET /v1/events against a real uvicorn server: replay, backpressure, heartbeat, tenancy, cleanup."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest

from tests.integration.edge.conftest import SseReader, edge_app
from tests.polling import eventually
from vsm_mcp.bus.events import Event
from vsm_mcp.config import load_settings

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("sse_write_path")]


async def test_live_events_have_ids_and_topics_filter() -> None:
    async with edge_app() as app, httpx.AsyncClient(base_url=app.url, timeout=30) as client:
        acme = app.tenants["acme"]
        async with client.stream("GET", "/v1/events?topics=tool.*", headers=app.auth("acme")) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            reader = SseReader(resp)
            assert (await reader.next()).data == "connected"
            await app.ctx.bus.publish(Event(topic="plan.step", tenant=acme))  # not subscribed
            sent = Event(topic="tool.called", tenant=acme, data={"n": 1})
            await app.ctx.bus.publish(sent)
            ev = await reader.next_event()
            assert (ev.id, ev.event) == (sent.id, "tool.called")
            assert Event.model_validate_json(ev.data) == sent


async def test_reconnect_replays_every_event_exactly_once_in_order() -> None:
    """Events keep flowing while the client is away and while it reconnects."""
    async with edge_app() as app, httpx.AsyncClient(base_url=app.url, timeout=30) as client:
        acme = app.tenants["acme"]
        published: list[str] = []
        received: list[str] = []

        async def publish(n: int) -> None:
            for _ in range(n):
                e = Event(topic="tool.called", tenant=acme, data={"i": len(published)})
                published.append(e.id)
                await app.ctx.bus.publish(e)
                await asyncio.sleep(0.002)

        async with client.stream("GET", "/v1/events", params={"topics": "tool.#"}, headers=app.auth("acme")) as resp:
            reader = SseReader(resp)
            await publish(10)
            for _ in range(6):  # read only part of what was sent, then drop the connection
                received.append((await reader.next_event()).id)
        await publish(15)  # missed while disconnected
        await asyncio.sleep(0.3)  # let some of them reach the database, keep others pending
        headers = {**app.auth("acme"), "Last-Event-ID": received[-1]}
        async with client.stream("GET", "/v1/events", params={"topics": "tool.#"}, headers=headers) as resp:
            reader = SseReader(resp)
            racing = asyncio.create_task(publish(15))  # published during the replay
            while len(received) < 40:
                received.append((await reader.next_event()).id)
            await racing
            # Anything further would be a duplicate; a marker proves the stream is drained.
            marker = Event(topic="tool.end", tenant=acme)
            await app.ctx.bus.publish(marker)
            assert (await reader.next_event()).id == marker.id
        assert received == published  # every event once, in publish order


async def test_last_event_id_query_parameter() -> None:
    async with edge_app() as app, httpx.AsyncClient(base_url=app.url, timeout=30) as client:
        acme = app.tenants["acme"]
        events = [Event(topic="a.b", tenant=acme, data={"i": i}) for i in range(5)]
        for e in events:
            await app.ctx.bus.publish(e)
        await app.edge.event_log.flush()
        url = f"/v1/events?topics=a.*&last_event_id={events[1].id}"
        async with client.stream("GET", url, headers=app.auth("acme")) as resp:
            reader = SseReader(resp)
            assert [(await reader.next_event()).id for _ in range(3)] == [e.id for e in events[2:]]


async def test_events_of_another_tenant_are_never_delivered() -> None:
    async with edge_app() as app, httpx.AsyncClient(base_url=app.url, timeout=30) as client:
        acme, globex = app.tenants["acme"], app.tenants["globex"]
        for i in range(3):
            await app.ctx.bus.publish(Event(topic="tool.called", tenant=globex, data={"secret": i}))
        await app.ctx.bus.publish(Event(topic="tool.called", tenant=""))  # system event: nobody's
        await app.edge.event_log.flush()
        headers = {**app.auth("acme"), "Last-Event-ID": "0"}  # replay everything acme may see
        async with client.stream("GET", "/v1/events?topics=%23", headers=headers) as resp:
            reader = SseReader(resp)
            await app.ctx.bus.publish(Event(topic="tool.called", tenant=globex, data={"secret": 9}))
            mine = Event(topic="tool.called", tenant=acme)
            await app.ctx.bus.publish(mine)
            ev = await reader.next_event()
            assert ev.id == mine.id, ev  # nothing of globex before acme's own event
            assert json.loads(ev.data)["tenant"] == acme


async def test_heartbeat_comment_is_sent() -> None:
    settings = load_settings(allow_anonymous=False, sse_heartbeat_s=0.2)
    async with edge_app(settings) as app, httpx.AsyncClient(base_url=app.url, timeout=30) as client:
        async with client.stream("GET", "/v1/events", headers=app.auth("acme")) as resp:
            reader = SseReader(resp)
            assert (await reader.next()).data == "connected"
            assert (await reader.next(timeout=20)) .data == "hb"


async def test_slow_client_gets_overflow_and_fast_client_gets_everything() -> None:
    settings = load_settings(allow_anonymous=False, sse_queue_size=8, sse_heartbeat_s=60)
    async with edge_app(settings) as app, httpx.AsyncClient(base_url=app.url, timeout=30) as client:
        acme = app.tenants["acme"]
        port = int(app.url.rsplit(":", 1)[1])
        # The slow client: a tiny receive buffer and it does not read at all for now.
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(slow, ("127.0.0.1", port))
        request = f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {app.keys['acme']}\r\n\r\n"
        await loop.sock_sendall(slow, request.encode())
        await eventually(lambda: app.edge.hub.connections == 1, what="the slow client to connect")
        payload = "x" * 64_000
        dropped = app.edge.metrics.sse_dropped.labels("overflow")
        async with client.stream("GET", "/v1/events", headers=app.auth("acme")) as resp:
            fast = SseReader(resp)
            # Publish one, wait for the fast client to have it, repeat — until the slow client,
            # whose socket buffers are full by now, has been cut off (or a generous cap is hit).
            for i in range(2000):
                e = Event(topic="load.x", tenant=acme, data={"i": i, "pad": payload})
                await app.ctx.bus.publish(e)
                assert (await fast.next_event()).id == e.id
                if dropped._value.get() >= 1:
                    break
            assert dropped._value.get() >= 1, "the slow client was never cut off"
            # ... and the fast one keeps receiving after that.
            e = Event(topic="load.x", tenant=acme, data={"after": True})
            await app.ctx.bus.publish(e)
            assert (await fast.next_event()).id == e.id
        # The slow client now reads what it was sent: it ends with the overflow notice.
        data = b""
        async with asyncio.timeout(30):
            while chunk := await loop.sock_recv(slow, 65536):
                data += chunk
                if b"event: overflow" in data and data.endswith(b"0\r\n\r\n"):
                    break
        slow.close()
        assert b"event: overflow" in data
        notice = data.split(b"event: overflow\ndata: ", 1)[1].split(b"\n", 1)[0]
        assert "last_event_id" in json.loads(notice)


async def test_disconnect_frees_connection_task_and_subscription() -> None:
    async with edge_app() as app, httpx.AsyncClient(base_url=app.url, timeout=30) as client:
        bus_subs = app.ctx.bus.subscriber_count  # type: ignore[attr-defined]
        tasks_before = len(asyncio.all_tasks())
        for _ in range(5):
            async with client.stream("GET", "/v1/events", headers=app.auth("acme")) as resp:
                await SseReader(resp).next()
        await eventually(
            lambda: not app.edge.hub.connections and len(asyncio.all_tasks()) <= tasks_before, what="cleanup"
        )
        assert app.edge.hub.connections == 0
        assert app.edge.hub._conns == {}
        assert app.ctx.bus.subscriber_count == bus_subs  # type: ignore[attr-defined]
        assert len(asyncio.all_tasks()) <= tasks_before


async def test_authentication_and_scope_and_bad_topics() -> None:
    async with edge_app(scopes=("tools:call",)) as app, httpx.AsyncClient(base_url=app.url, timeout=30) as client:
        r = await client.get("/v1/events")
        assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
        r = await client.get("/v1/events", headers=app.auth("acme"))
        assert r.status_code == 403 and "events:read" in r.json()["error"]["message"]
    async with edge_app(tenants=("initech",)) as app, httpx.AsyncClient(base_url=app.url, timeout=30) as client:
        r = await client.get("/v1/events?topics=tool.*x", headers=app.auth("initech"))
        assert r.status_code == 400 and "tool.*x" in r.json()["error"]["message"]


async def test_replay_longer_than_the_cap_comes_in_batches_without_a_gap() -> None:
    settings = load_settings(allow_anonymous=False, sse_replay_max=3, sse_heartbeat_s=60)
    async with edge_app(settings) as app, httpx.AsyncClient(base_url=app.url, timeout=30) as client:
        acme = app.tenants["acme"]
        events = [Event(topic="a.b", tenant=acme, data={"i": i}) for i in range(6)]
        for e in events:
            await app.ctx.bus.publish(e)
        await app.edge.event_log.flush()
        headers = {**app.auth("acme"), "Last-Event-ID": events[0].id}
        async with client.stream("GET", "/v1/events", headers=headers) as resp:
            reader = SseReader(resp)
            batch = [await reader.next_event() for _ in range(4)]
        assert [b.event for b in batch] == ["a.b"] * 3 + ["overflow"]  # capped, and told so
        notice = json.loads(batch[3].data)
        assert notice["last_event_id"] == batch[2].id and "replay" in notice["reason"]
        headers = {**app.auth("acme"), "Last-Event-ID": notice["last_event_id"]}
        async with client.stream("GET", "/v1/events", headers=headers) as resp:
            reader = SseReader(resp)
            rest = [await reader.next_event() for _ in range(2)]
            live = Event(topic="a.b", tenant=acme)
            await app.ctx.bus.publish(live)
            assert (await reader.next_event()).id == live.id  # then live, nothing in between
        assert [b.id for b in batch[:3] + rest] == [e.id for e in events[1:]]
