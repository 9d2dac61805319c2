"""The direct-write SSE path (router/edge/sse_direct.py) against a real uvicorn server: when it is
chosen (and when not), HTTP/1.1 framing, fan-out, overflow, cleanup and the replay hand-over."""

from __future__ import annotations

import asyncio
import socket

import h11
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from router.edge import sse
from router.edge.sse_direct import direct_writer
from router.upstreams.http11 import http_chunk
from tests.integration.edge.conftest import EdgeApp, SseReader, edge_app
from tests.polling import eventually
from vsm_mcp.bus.events import Event
from vsm_mcp.config import load_settings

pytestmark = pytest.mark.anyio


class RawSse(asyncio.Protocol):
    """A raw client that parses the response with h11, so any framing mistake fails the test."""

    def __init__(self, key: str, path: str = "/v1/events", headers: dict[str, str] | None = None) -> None:
        self.h11 = h11.Connection(h11.CLIENT)
        self.request = self.h11.send(h11.Request(
            method="GET", target=path,
            headers=[("Host", "127.0.0.1"), ("Authorization", f"Bearer {key}"), *(headers or {}).items()],
        )) + self.h11.send(h11.EndOfMessage())
        self.body = b""
        self.status = 0
        self.ended = False
        self.changed = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        while (event := self.h11.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
            if isinstance(event, h11.Response):
                self.status = event.status_code
            elif isinstance(event, h11.Data):
                self.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.ended = True
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.changed.set()

    def ids(self) -> list[str]:
        return [line[4:] for line in self.body.decode().split("\n") if line.startswith("id: ")]


async def open_raw(app: EdgeApp, n: int, tenant: str = "acme", **kw: object) -> list[RawSse]:
    loop = asyncio.get_running_loop()
    port = int(app.url.rsplit(":", 1)[1])
    clients = []
    for _ in range(n):
        _, client = await loop.create_connection(lambda: RawSse(app.keys[tenant], **kw), "127.0.0.1", port)  # type: ignore[arg-type]
        clients.append(client)
    await eventually(lambda: all(b": connected" in c.body for c in clients), what="every client to connect")
    return clients


async def test_fan_out_to_many_connections_with_valid_chunked_framing() -> None:
    settings = load_settings(allow_anonymous=False, sse_heartbeat_s=60, edge_rate_burst=1000)
    async with edge_app(settings) as app:
        acme = app.tenants["acme"]
        clients = await open_raw(app, 200)
        assert app.edge.hub.direct_connections == 200
        published = []
        for i in range(5):
            e = Event(topic="tool.called", tenant=acme, data={"i": i, "text": "line\nbreak é"})
            published.append(e.id)
            await app.ctx.bus.publish(e)
        await app.ctx.bus.publish(Event(topic="tool.called", tenant=app.tenants["globex"]))  # not theirs
        await eventually(lambda: all(len(c.ids()) >= 5 for c in clients), what="every event everywhere")
        await asyncio.sleep(0.1)
        for c in clients:
            assert c.status == 200 and c.ids() == published
        frames = [f for f in clients[0].body.decode().split("\n\n") if f.startswith("id: ")]
        assert Event.model_validate_json(frames[0].split("\ndata: ", 1)[1]).data["text"] == "line\nbreak é"
        for c in clients:
            assert c.transport is not None
            c.transport.close()
        await eventually(lambda: app.edge.hub.connections == 0, what="the hub to forget every client")


async def test_a_client_that_never_reads_is_cut_off_and_freed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "GRACE_S", 0.5)  # how long it may take to read its overflow notice
    settings = load_settings(allow_anonymous=False, sse_heartbeat_s=60, sse_buffer_bytes=64 * 1024)
    async with edge_app(settings) as app:
        acme = app.tenants["acme"]
        tasks_before = len(asyncio.all_tasks())
        port = int(app.url.rsplit(":", 1)[1])
        loop = asyncio.get_running_loop()
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", port))
        stuck.sendall(f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {app.keys['acme']}\r\n\r\n".encode())
        fast, = await open_raw(app, 1)
        await eventually(lambda: app.edge.hub.connections == 2, what="both clients")
        dropped = app.edge.metrics.sse_dropped.labels("overflow")
        pad = "x" * 32_000
        sent = []
        for i in range(400):  # until the stuck client's socket buffers and our bound are full
            e = Event(topic="load.x", tenant=acme, data={"i": i, "pad": pad})
            sent.append(e.id)
            await app.ctx.bus.publish(e)
            await eventually(lambda: len(fast.ids()) == len(sent), what="the fast client to keep up")
            if dropped._value.get() >= 1:
                break
        assert dropped._value.get() >= 1, "the stuck client was never cut off"
        # Its connection and task are gone whether or not it took its overflow notice in time
        # (after the grace the transport is aborted and its unsent bytes dropped).
        await eventually(lambda: app.edge.hub.connections == 1, what="the stuck client to be dropped")
        await eventually(lambda: len(asyncio.all_tasks()) <= tasks_before + 2, what="its tasks to end")
        e = Event(topic="load.x", tenant=acme, data={"after": True})
        await app.ctx.bus.publish(e)
        await eventually(lambda: fast.ids()[-1:] == [e.id], what="the fast client to go on")
        assert fast.ids() == [*sent, e.id]
        stuck.setblocking(False)
        data = b""
        try:  # the server dropped it: what was buffered, then EOF or a reset, never a hang
            async with asyncio.timeout(20):
                while chunk := await loop.sock_recv(stuck, 1 << 20):
                    data += chunk
        except ConnectionResetError:
            pass
        if data.endswith(b"0\r\n\r\n"):  # it got the end of the response: the notice came first
            assert b"event: overflow" in data[-1000:]
        stuck.close()


async def test_abrupt_disconnects_free_everything_while_events_flow() -> None:
    async with edge_app() as app:
        acme = app.tenants["acme"]
        tasks_before = len(asyncio.all_tasks())
        subs = app.ctx.bus.subscriber_count  # type: ignore[attr-defined]
        clients = await open_raw(app, 50)
        keep, = await open_raw(app, 1)
        for i, c in enumerate(clients):
            assert c.transport is not None
            if i % 2:
                sock = c.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            c.transport.close()
            await app.ctx.bus.publish(Event(topic="x", tenant=acme, data={"i": i}))
        await eventually(lambda: app.edge.hub.connections == 1, what="every closed client to be forgotten")
        await eventually(lambda: len(asyncio.all_tasks()) <= tasks_before + 2, what="their tasks to end")
        assert sum(len(group) for group in app.edge.hub._conns[acme].values()) == 1
        assert app.ctx.bus.subscriber_count == subs  # type: ignore[attr-defined]
        await eventually(lambda: len(keep.ids()) == 50, what="the remaining client to get every event")


async def test_replay_hand_over_has_no_gap_and_no_duplicate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Live events published while the replay reads the log land both in the replay (via the hub's
    ring) and in the connection's buffer; the hand-over to direct writes sends each once."""
    async with edge_app() as app:
        acme = app.tenants["acme"]
        hub = app.edge.hub
        before = [Event(topic="t.x", tenant=acme, data={"i": i}) for i in range(5)]
        for e in before:
            await app.ctx.bus.publish(e)
        await app.edge.event_log.flush()
        gate = asyncio.Event()
        reading = asyncio.Event()
        real_replay = hub.replay

        async def slow_replay(conn: sse.SseConnection, after_id: str) -> tuple[list[Event], bool]:
            reading.set()
            await gate.wait()
            return await real_replay(conn, after_id)

        monkeypatch.setattr(hub, "replay", slow_replay)
        loop = asyncio.get_running_loop()
        port = int(app.url.rsplit(":", 1)[1])
        _, client = await loop.create_connection(
            lambda: RawSse(app.keys["acme"], headers={"Last-Event-ID": before[0].id}), "127.0.0.1", port,
        )
        await asyncio.wait_for(reading.wait(), 20)
        during = [Event(topic="t.x", tenant=acme, data={"during": i}) for i in range(5)]
        for e in during:
            await app.ctx.bus.publish(e)
        gate.set()
        after = []
        for i in range(5):  # racing the hand-over itself
            e = Event(topic="t.x", tenant=acme, data={"after": i})
            after.append(e)
            await app.ctx.bus.publish(e)
            await asyncio.sleep(0)
        expected = [e.id for e in before[1:] + during + after]
        await eventually(lambda: len(client.ids()) >= len(expected), what="replay, buffer and live events")
        marker = Event(topic="t.x", tenant=acme)
        await app.ctx.bus.publish(marker)
        await eventually(lambda: client.ids()[-1:] == [marker.id], what="the marker")
        assert client.ids() == [*expected, marker.id]
        assert hub.direct_connections == 1


class BodyTap:
    """A middleware that must see every body byte (as a compressing or signing one would)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen = b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def tapped(message: Message) -> None:
            self.seen += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, tapped)


async def test_an_unknown_send_wrapper_keeps_the_portable_path() -> None:
    """A wrapper of ``send`` not known to pass bytes through unchanged disables direct writes."""
    taps: list[BodyTap] = []

    def tap(app: ASGIApp) -> BodyTap:
        taps.append(BodyTap(app))
        return taps[-1]

    async with edge_app(middleware=[Middleware(tap)], check_path=False) as app, httpx.AsyncClient(
        base_url=app.url, timeout=30
    ) as client:
        async with client.stream("GET", "/v1/events", headers=app.auth("acme")) as resp:
            reader = SseReader(resp)
            assert (await reader.next()).data == "connected"
            e = Event(topic="a.b", tenant=app.tenants["acme"])
            await app.ctx.bus.publish(e)
            assert (await reader.next_event()).id == e.id
        assert (app.edge.hub.direct_connections, app.edge.hub.asgi_connections) == (0, 1)
        assert f"id: {e.id}".encode() in taps[0].seen


async def test_h11_server_uses_the_portable_path() -> None:
    async with edge_app(check_path=False) as app:
        plain = Starlette(routes=app.edge.routes())
        plain.state.gate = app.gate
        config = uvicorn.Config(plain, http="h11", log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            await eventually(lambda: server.started, 30, "uvicorn (h11)")
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            asgi_before = app.edge.hub.asgi_connections
            async with httpx.AsyncClient(base_url=url, timeout=30) as client, client.stream(
                "GET", "/v1/events", headers=app.auth("acme"),
            ) as resp:
                reader = SseReader(resp)
                assert (await reader.next()).data == "connected"
                e = Event(topic="a.b", tenant=app.tenants["acme"])
                await app.ctx.bus.publish(e)
                assert (await reader.next_event()).id == e.id
            assert app.edge.hub.asgi_connections == asgi_before + 1
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 30)
            sock.close()


async def test_finish_gives_up_on_a_client_that_never_reads() -> None:
    async def stuck_send(message: object) -> None:
        await asyncio.sleep(3600)

    conn = sse.SseConnection("t", ("#",), 4)
    conn.overflow()
    assert await sse._finish(conn, stuck_send, 0.05) is False  # the caller then aborts the transport


async def test_direct_writer_needs_uvicorns_own_send() -> None:
    async def plain_send(message: object) -> None:
        pass

    assert direct_writer({"type": "http"}, plain_send) is None
    assert http_chunk(b"abc") == b"3\r\nabc\r\n" and http_chunk(b"x" * 26)[:4] == b"1a\r\n"


async def test_an_event_replayed_from_the_log_before_the_hub_saw_it_is_written_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The log records an event when it is published; the hub dispatches it a moment later. A
    connection that replays it in between and goes live must not get it again from the hub."""
    async with edge_app() as app:
        acme = app.tenants["acme"]
        hub = app.edge.hub
        first = Event(topic="t.x", tenant=acme)
        await app.ctx.bus.publish(first)
        await eventually(lambda: first in hub._recent, what="the hub to dispatch the first event")  # noqa: SLF001
        held: list[Event] = []
        real_deliver = hub.deliver

        async def hold(event: Event) -> None:
            held.append(event)

        monkeypatch.setattr(hub, "deliver", hold)  # the hub is "late" from here on
        late = Event(topic="t.x", tenant=acme)
        await app.ctx.bus.publish(late)  # in the log, not yet dispatched
        await eventually(lambda: held == [late], what="the hub to receive the event")
        clients = await open_raw(app, 1, headers={"Last-Event-ID": first.id})
        await eventually(lambda: clients[0].ids() == [late.id], what="the replay")
        await eventually(lambda: hub.direct_connections == 1, what="the connection to go live")
        monkeypatch.setattr(hub, "deliver", real_deliver)
        for e in held:
            hub.dispatch(e)
        marker = Event(topic="t.x", tenant=acme)
        await app.ctx.bus.publish(marker)
        await eventually(lambda: clients[0].ids()[-1:] == [marker.id], what="the marker")
        assert clients[0].ids() == [late.id, marker.id]
