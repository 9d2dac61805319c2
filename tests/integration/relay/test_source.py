"""servers/relay/source.py against real local servers: an SSE source (starlette on uvicorn) and a
WebSocket source (the ``websockets`` server), both on 127.0.0.1.

What is checked: items arrive in order from either kind; each connection goes to the address the
guard returned (a host name that resolves nowhere still connects, to the pinned IP, with the name in
``Host``); the guard runs again before every reconnect, and an address it refuses then ends the
reading without a connection to it; drops are reported and retried.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

from servers.relay.source import Backoff, SourceItem, check_source_url, read_source
from tests.asgi_server import serve_asgi
from vsm_mcp.errors import InvalidArguments
from vsm_mcp.ssrf import AddressGuard, AllowList, FetchRefused, Target

pytestmark = pytest.mark.anyio
FAST = Backoff(first_s=0.05, max_s=0.2)


class Source:
    """A live source that sends what the test puts in ``queue``; ``None`` closes the connection."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.hosts: list[str] = []  # the Host header of each connection
        self.last_ids: list[str] = []  # the Last-Event-ID of each SSE connection
        self.connections = 0


def sse_app(src: Source) -> Starlette:
    async def events(request: Request) -> StreamingResponse:
        src.connections += 1
        src.hosts.append(request.headers.get("host", ""))
        src.last_ids.append(request.headers.get("last-event-id", ""))
        start = int(src.last_ids[-1] or 0)

        async def gen() -> AsyncIterator[bytes]:
            n = start
            while (item := await src.queue.get()) is not None:
                n += 1
                yield f"id: {n}\nevent: news\ndata: {item}\n\n".encode()
        return StreamingResponse(gen(), media_type="text/event-stream")

    async def page(request: Request) -> Response:
        return PlainTextResponse("not a stream")

    return Starlette(routes=[Route("/events", events), Route("/page", page)])


@asynccontextmanager
async def ws_source(src: Source) -> AsyncIterator[int]:
    async def handler(ws: ServerConnection) -> None:
        src.connections += 1
        src.hosts.append(ws.request.headers.get("host", "") if ws.request else "")
        closed = asyncio.ensure_future(ws.wait_closed())  # the client left: end, don't wait on the queue
        while True:
            get = asyncio.ensure_future(src.queue.get())
            await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not get.done():
                get.cancel()
                return
            if (item := get.result()) is None:
                closed.cancel()
                return
            await ws.send(item)

    async with ws_serve(handler, "127.0.0.1", 0) as server:
        yield next(iter(server.sockets)).getsockname()[1]


def pinned_to_loopback(host: str, port: int, calls: list[str]) -> AddressGuard:
    """A guard whose DNS answers 127.0.0.1 for ``host`` (allowed on ``port`` only)."""
    async def resolver(name: str, _port: int) -> list[str]:
        calls.append(name)
        return ["127.0.0.1"] if name == host else []
    return AddressGuard(AllowList.parse([f"127.0.0.1:{port}"]), resolver)


async def take(items: AsyncIterator[SourceItem], n: int) -> list[SourceItem]:
    out = []
    async with asyncio.timeout(30):
        async for item in items:
            out.append(item)
            if len(out) == n:
                break
    return out


async def test_sse_items_arrive_over_the_pinned_address_with_the_name_in_host() -> None:
    src, calls, drops = Source(), list[str](), list[str]()
    async with serve_asgi(sse_app(src)) as base:
        port = int(base.rsplit(":", 1)[1])
        guard = pinned_to_loopback("feed.invalid", port, calls)
        url = f"http://feed.invalid:{port}/events"
        for text in ("first", "second"):
            src.queue.put_nowait(text)
        items = read_source(url, lambda: guard.check(url, "feed.invalid", port), _record(drops), FAST)
        got = await take(items, 2)
        src.queue.put_nowait(None)  # drop: the reader reconnects from id 2 after checking again
        src.queue.put_nowait("third")
        got += await take(items, 1)
        await items.aclose()
    assert [(i.id, i.event, i.data) for i in got] == [("1", "news", "first"), ("2", "news", "second"),
                                                        ("3", "news", "third")]
    # .invalid never resolves (RFC 6761): reaching the source proves the connection used the pin
    assert src.hosts == [f"feed.invalid:{port}"] * 2 and src.last_ids == ["", "2"]
    assert calls == ["feed.invalid", "feed.invalid"]  # checked before each connection
    assert len(drops) == 1 and "closed the connection" in drops[0]


async def test_ws_messages_arrive_over_the_pinned_address_and_reconnect() -> None:
    src, calls, drops = Source(), list[str](), list[str]()
    async with ws_source(src) as port:
        guard = pinned_to_loopback("feed.invalid", port, calls)
        url = f"ws://feed.invalid:{port}/live"
        src.queue.put_nowait('{"title": "one"}')
        items = read_source(url, lambda: guard.check(url, "feed.invalid", port), _record(drops), FAST)
        got = await take(items, 1)
        src.queue.put_nowait(None)
        src.queue.put_nowait("two")
        got += await take(items, 1)
        await items.aclose()
    assert [i.data for i in got] == ['{"title": "one"}', "two"] and [i.id for i in got] == ["1", "2"]
    assert src.hosts == [f"feed.invalid:{port}"] * 2 and calls == ["feed.invalid"] * 2
    assert len(drops) == 1 and url in drops[0]


@pytest.mark.parametrize("scheme", ["http", "ws"])
async def test_a_rebinding_to_a_private_address_on_reconnect_ends_the_reading(scheme: str) -> None:
    src, drops = Source(), list[str]()
    answers = iter(["127.0.0.1", "10.0.0.7"])  # the second lookup rebinds the name to a private address

    async def resolver(name: str, _port: int) -> list[str]:
        return [next(answers)]

    server = serve_asgi(sse_app(src)) if scheme == "http" else _ws_url(src)
    async with server as base:
        port = int(base.rsplit(":", 1)[1].split("/")[0])
        guard = AddressGuard(AllowList.parse([f"127.0.0.1:{port}"]), resolver)
        url = f"{scheme}://feed.invalid:{port}/events"
        src.queue.put_nowait("hello")
        items = read_source(url, lambda: guard.check(url, "feed.invalid", port), _record(drops), FAST)
        got = await take(items, 1)
        src.queue.put_nowait(None)
        with pytest.raises(FetchRefused, match=r"10\.0\.0\.7 is a private address.*VSM_FETCH_ALLOW"):
            await take(items, 1)
    assert got[0].data == "hello" and src.connections == 1  # never connected after the refusal


async def test_a_source_that_is_not_a_stream_is_reported_and_retried() -> None:
    src, drops = Source(), list[str]()
    async with serve_asgi(sse_app(src)) as base:
        port = int(base.rsplit(":", 1)[1])
        target = Target("127.0.0.1", port, ipaddress.ip_address("127.0.0.1"))

        async def pin() -> Target:
            return target

        two = asyncio.Event()

        async def on_drop(problem: str) -> None:
            drops.append(problem)
            if len(drops) == 2:
                two.set()

        items = read_source(f"{base}/page", pin, on_drop, FAST)
        task = asyncio.create_task(anext(items))
        async with asyncio.timeout(30):
            await two.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await items.aclose()
    assert "is not an SSE stream (content-type 'text/plain; charset=utf-8'" in drops[0]
    assert drops[0].endswith("reconnecting in 0.05 s") and drops[1].endswith("reconnecting in 0.1 s")


@pytest.mark.parametrize(("url", "problem"), [
    ("ftp://example.org/x", "an SSE (http, https) or WebSocket (ws, wss) source"),
    ("ws:///nohost", "has no host"),
    ("wss://user:pw@example.org/live", "carries credentials"),
    ("http://example.org:99999/", "invalid URL"),
])
def test_bad_source_urls_are_named(url: str, problem: str) -> None:
    with pytest.raises(InvalidArguments, match=re.escape(problem)):
        check_source_url(url)


def test_default_ports_follow_the_scheme() -> None:
    assert [check_source_url(f"{s}://example.org/")[2] for s in ("http", "https", "ws", "wss")] == [80, 443, 80, 443]


def _record(into: list[str]):  # type: ignore[no-untyped-def]
    async def on_drop(problem: str) -> None:
        into.append(problem)
    return on_drop


@asynccontextmanager
async def _ws_url(src: Source) -> AsyncIterator[str]:
    async with ws_source(src) as port:
        yield f"ws://127.0.0.1:{port}"
