"""router/upstreams/http11.py against a real TCP server on 127.0.0.1 that answers with scripted bytes.

Each case is one way an HTTP/1.1 server may frame an answer (Content-Length, chunked, until
close, interim 100, split across packets) or misbehave (garbage, closing a kept-alive
connection, dying mid-body); the client must return the exact body, reuse a connection only
when that is safe, and turn every failure into ``HttpError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from router.upstreams.http11 import Http11Pool, HttpError

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[pytest.param(("asyncio", {}), id="asyncio"), pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """Both loops: `vsm-mcp serve` runs on uvloop, whose transports differ from asyncio's."""
    return request.param  # type: ignore[no-any-return]

Handler = Callable[[bytes, int], list[bytes] | None]  # (request, n-th request on this conn) -> writes


@asynccontextmanager
async def scripted(handler: Handler, *, close_after: bool = False) -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    """A server that reads one request at a time and writes what ``handler`` returns
    (None: close the connection). Yields (url, requests seen, connections accepted)."""
    seen: list[bytes] = []
    accepted: list[int] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                seen.append(request)
                n += 1
                writes = handler(request, n)
                if writes is None:
                    break
                for w in writes:
                    writer.write(w)
                    await writer.drain()
                    await asyncio.sleep(0.005)  # separate packets
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/mcp?x=1", seen, accepted
    finally:
        server.close()


def ok(body: bytes, extra: bytes = b"") -> list[bytes]:
    return [b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % len(body) + extra + b"\r\n" + body]


async def post(pool: Http11Pool, body: bytes = b'{"a":1}') -> tuple[int, dict[str, str], bytes]:
    async with pool.post({"content-type": "application/json", "x-test": "1"}, body) as resp:
        return resp.status, resp.headers, await resp.read()


async def test_request_bytes_and_keep_alive_reuse() -> None:
    async with scripted(lambda req, n: ok(b'{"n":%d}' % n)) as (url, seen, accepted):
        pool = Http11Pool(url)
        for i in range(1, 4):
            status, headers, body = await post(pool)
            assert (status, body) == (200, b'{"n":%d}' % i)
            assert headers["content-type"] == "application/json"
        assert len(accepted) == 1  # one connection for three requests
        head, _, body = seen[0].partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /mcp?x=1 HTTP/1.1"
        assert b"content-length: 7" in lines and b"x-test: 1" in lines and lines[1].startswith(b"host: 127.0.0.1:")
        assert body == b'{"a":1}'
        pool.close()


async def test_chunked_split_across_packets_and_interim_100() -> None:
    def handler(_req: bytes, _n: int) -> list[bytes]:
        return [
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5\r\nhel", b"lo\r\n", b"6;ext=1\r\n world\r\n", b"0\r\n\r\n",
        ]

    async with scripted(handler) as (url, _seen, accepted):
        pool = Http11Pool(url)
        async with pool.post({}, b"{}") as resp:
            assert resp.status == 200
            got = [c async for c in resp.chunks()]
        assert b"".join(got) == b"hello world" and len(got) >= 2  # streamed, not only at the end
        assert (await post(pool))[2] == b"hello world"
        assert len(accepted) == 1


async def test_body_until_close_is_complete_but_not_reused() -> None:
    async with scripted(lambda r, n: [b"HTTP/1.1 200 OK\r\n\r\n", b"until ", b"eof"], close_after=True) as (url, _s, accepted):
        pool = Http11Pool(url)
        assert (await post(pool))[2] == b"until eof"
        assert (await post(pool))[2] == b"until eof"
        assert len(accepted) == 2


async def test_connection_close_header_is_honoured() -> None:
    async with scripted(lambda r, n: ok(b"{}", b"connection: close\r\n")) as (url, _s, accepted):
        pool = Http11Pool(url)
        await post(pool)
        await post(pool)
        assert len(accepted) == 2


async def test_server_closing_an_idle_connection_costs_a_new_connection_not_an_error() -> None:
    # The server answers, then closes the kept-alive connection while it is idle in the pool.
    async with scripted(lambda r, n: ok(b'"x"'), close_after=True) as (url, _s, accepted):
        pool = Http11Pool(url)
        assert (await post(pool))[2] == b'"x"'
        await asyncio.sleep(0.05)
        assert (await post(pool))[2] == b'"x"'  # the stale connection is found before the write
        assert len(accepted) == 2


async def test_failures_are_http_errors() -> None:
    async with scripted(lambda r, n: [b"SMTP ready\r\n\r\n"]) as (url, _s, _a):
        with pytest.raises(HttpError, match="malformed HTTP response"):
            await post(Http11Pool(url))
    async with scripted(lambda r, n: [b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort"], close_after=True) as (url, _s, _a):
        with pytest.raises(HttpError, match="closed by the upstream"):
            await post(Http11Pool(url))
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(HttpError, match="ConnectionRefusedError|Connect"):
        await post(Http11Pool(f"http://127.0.0.1:{port}/"))


async def test_large_bodies_both_ways() -> None:
    big = bytes(range(256)) * 40_000  # 10 MB: above the socket buffers and the read high-water mark
    async with scripted(lambda req, n: ok(req.partition(b"\r\n\r\n")[2])) as (url, _s, accepted):
        pool = Http11Pool(url)
        assert (await post(pool, big))[2] == big
        assert (await post(pool, b"small"))[2] == b"small"
        assert len(accepted) == 1


async def test_an_exception_in_the_block_closes_the_connection() -> None:
    async with scripted(lambda r, n: ok(b"{}")) as (url, _s, accepted):
        pool = Http11Pool(url)
        with pytest.raises(RuntimeError):
            async with pool.post({}, b"{}") as _resp:
                raise RuntimeError("caller gave up")
        await post(pool)
        assert len(accepted) == 2


async def test_a_declared_length_body_split_from_its_head_wakes_the_caller_once_complete() -> None:
    """uvicorn writes head and body separately; the caller of a Content-Length answer is woken
    when the body is complete, not at the head (a second wake-up per call otherwise)."""
    body = b'{"jsonrpc":"2.0"}'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
    async with scripted(lambda req, n: [head, body]) as (url, _s, _a):
        pool = Http11Pool(url)
        async with pool.post({}, b"{}") as resp:
            assert resp.complete  # both packets were in before the caller ran again
            assert await resp.read() == body


async def test_a_request_the_upstream_read_is_never_sent_twice() -> None:
    # Regression (issue 18): the upstream reads the second request on a kept-alive connection,
    # runs it, then drops the connection without answering. Re-sending it would run it twice.
    executed: list[int] = []

    def handler(req: bytes, n: int) -> list[bytes] | None:
        executed.append(n)
        return ok(b'"x"') if n == 1 else None

    async with scripted(handler) as (url, _s, accepted):
        pool = Http11Pool(url)
        assert (await post(pool))[2] == b'"x"'
        with pytest.raises(HttpError):
            await post(pool)
        assert len(executed) == 2 and len(accepted) == 1  # one execution each; no second connection


async def test_an_idempotent_request_may_be_retried_on_a_fresh_connection() -> None:
    async with scripted(lambda r, n: ok(b'"x"') if n == 1 else None) as (url, _s, accepted):
        pool = Http11Pool(url)
        await post(pool)
        async with pool.post({"content-type": "application/json"}, b"{}", idempotent=True) as resp:
            assert await resp.read() == b'"x"'
        assert len(accepted) == 2
