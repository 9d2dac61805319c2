"""A minimal HTTP/1.1 client for the router's hot path: POST a JSON body, stream the answer.

Why not httpx: per request, httpcore's pure-Python h11 state machine and its layers cost more
CPU than everything else the router does for a call. This client keeps a small pool of
persistent connections, each an ``asyncio.Protocol`` whose responses are parsed by httptools
(llhttp, the parser uvicorn uses), writes one request in one write and wakes the caller once
per event (headers, body data, end) instead of once per ``readuntil``/``readexactly``. It does
exactly what the upstream call needs — nothing else (no redirects, no cookies, no proxies, no
HTTP/2); everything else keeps using httpx.

``post(headers, body)`` is an async context manager yielding ``Response``, whose ``chunks()``
async-iterates the decoded body (``read()`` joins it). A connection is reused only when its
response was read to the end and the server did not ask to close it. A request is never sent
twice unless the caller says it is idempotent (a tools/call the upstream read must not run again).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from types import TracebackType
from urllib.parse import urlsplit

import httptools

# Above this much unread body the connection stops reading from the socket (backpressure).
_HIGH_WATER = 1 << 22


def http_chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk (``transfer-encoding: chunked``); empty data would be the
    terminating chunk, so callers frame only non-empty data and end with ``LAST_CHUNK``."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


class HttpError(ConnectionError):
    """The connection broke or the server spoke something that is not HTTP/1.1."""


class Response:
    __slots__ = ("_conn", "status", "headers", "complete", "_chunks", "_buffered")

    def __init__(self, conn: _Conn, status: int, headers: dict[str, str]) -> None:
        self._conn = conn
        self.status = status
        self.headers = headers
        self.complete = False
        self._chunks: list[bytes] = []
        self._buffered = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if self._chunks:
                data, self._chunks = self._chunks, []
                self._buffered = 0
                conn.resume()
                for chunk in data:
                    yield chunk
                continue
            if self.complete:
                return
            await conn.wait()

    async def read(self) -> bytes:
        if self.complete:  # the common case: the whole answer came with the headers
            data = b"".join(self._chunks)
            self._chunks, self._buffered = [], 0
            self._conn.resume()
            return data
        return b"".join([c async for c in self.chunks()])


class _Conn(asyncio.Protocol):
    """One connection; one request at a time. httptools calls the ``on_*`` methods."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.error: Exception | None = None
        self.closed = False
        self.response: Response | None = None
        self._headers: dict[str, str] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False
        self._paused_reading = False
        self._got_bytes = False
        self._hold = False  # a body of declared length is on its way: wake the caller at its end

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(HttpError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"malformed HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        resp = self.response
        if resp is not None and not resp.complete and _close_delimited(resp):
            resp.complete = True  # the body ran to EOF, as its headers said it would
        elif resp is None or not resp.complete:
            self.error = self.error or HttpError(f"connection closed by the upstream{f': {exc}' if exc else ''}")
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # --- httptools callbacks ---------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").strip()
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        headers, self._headers = self._headers, {}
        if 100 <= status < 200:  # an interim answer (100 Continue, 103): the real one follows
            return
        self.response = Response(self, status, headers)
        if not self.parser.should_keep_alive():
            headers["connection"] = "close"
        # A body of declared length is read whole by its caller (a JSON answer): waking it at the
        # head would cost a second wake-up whenever head and body arrive in separate segments
        # (uvicorn writes them with two writes). Streams (SSE, chunked) wake at once.
        self._hold = "content-length" in headers
        if not self._hold:
            self._wake()

    def on_body(self, body: bytes) -> None:
        resp = self.response
        if resp is None:
            return
        resp._chunks.append(body)  # noqa: SLF001
        resp._buffered += len(body)  # noqa: SLF001
        if resp._buffered > _HIGH_WATER and self.transport is not None and not self._paused_reading:  # noqa: SLF001
            self._hold = False  # a paused reader must be drained, or the body never completes
            self.transport.pause_reading()
            self._paused_reading = True
        if not self._hold:
            self._wake()

    def on_message_complete(self) -> None:
        if self.response is not None:
            self.response.complete = True
        self._hold = False
        self._wake()

    # --- used by Http11Pool / Response -----------------------------------------------------
    async def wait(self) -> None:
        """Until the parser has something new for the response (or the connection broke)."""
        if self.error is not None:
            raise self.error
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        if self.error is not None:
            raise self.error

    def resume(self) -> None:
        if self._paused_reading and self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()

    async def send(self, request: bytes) -> Response:
        assert self.transport is not None
        self.response = None
        self._got_bytes = False
        self._hold = False
        self.transport.write(request)
        if self._paused:  # a large body filled the socket buffer
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
            self._drained = None
        while self.response is None:
            await self.wait()
        return self.response

    @property
    def reusable(self) -> bool:
        resp = self.response
        return (
            not self.closed
            and self.error is None
            and resp is not None
            and resp.complete
            and resp.headers.get("connection", "").lower() != "close"
        )

    @property
    def stale(self) -> bool:
        """Closed while idle in the pool (the server's keep-alive timeout)."""
        return self.closed or self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, error: Exception) -> None:
        self.error = error
        if self.transport is not None:
            self.transport.close()
        self._wake()


def _close_delimited(resp: Response) -> bool:
    h = resp.headers
    return "content-length" not in h and "chunked" not in h.get("transfer-encoding", "").lower()


class _Exchange:
    """``async with pool.post(...) as resp``: the connection goes back to the pool on a clean
    exit with the body read to the end, and is closed on anything else."""

    __slots__ = ("_pool", "_headers", "_body", "_conn", "_idempotent")

    def __init__(self, pool: Http11Pool, headers: dict[str, str] | bytes, body: bytes, idempotent: bool) -> None:
        self._pool, self._headers, self._body = pool, headers, body
        self._conn: _Conn | None = None
        self._idempotent = idempotent

    async def __aenter__(self) -> Response:
        pool = self._pool
        request = pool.encode(self._headers, self._body)
        conn = pool.take()
        reused = conn is not None
        if conn is None:
            conn = await pool.connect()
        try:
            resp = await conn.send(request)
        except (OSError, HttpError) as exc:
            conn.close()
            # Once the request is written, nothing proves the upstream did not read and run it (it
            # may have executed a tools/call and dropped the connection before answering), so only
            # an idempotent request is sent again. A connection the server closed while idle is
            # found stale before the write (``take``) and never used; a failed connect raises above.
            if not (reused and self._idempotent) or conn._got_bytes:  # noqa: SLF001
                raise _as_http_error(exc) from exc
            conn = await pool.connect()
            try:
                resp = await conn.send(request)
            except (OSError, HttpError) as exc2:
                conn.close()
                raise _as_http_error(exc2) from exc2
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return resp

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn = self._conn
        if conn is None:
            return
        if et is None and conn.reusable:
            self._pool.give_back(conn)
        else:
            conn.close()


def _as_http_error(exc: Exception) -> HttpError:
    return exc if isinstance(exc, HttpError) else HttpError(f"{type(exc).__name__}: {exc}")


class Http11Pool:
    """Persistent connections to one origin."""

    def __init__(self, url: str, *, max_idle: int = 64) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.tls else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.max_idle = max_idle
        self._idle: list[_Conn] = []
        self._ssl = ssl.create_default_context() if self.tls else None
        self._prefix = f"POST {self.path} HTTP/1.1\r\nhost: {self.host_header}\r\n".encode("latin-1")

    def post(self, headers: dict[str, str] | bytes, body: bytes, *, idempotent: bool = False) -> _Exchange:
        """``headers`` as a dict, or already encoded (``encode_headers``) for a caller that sends
        the same ones again and again. ``idempotent``: running the request twice does no harm, so
        it may be re-sent once when a kept-alive connection broke before any answer."""
        return _Exchange(self, headers, body, idempotent)

    @staticmethod
    def encode_headers(headers: dict[str, str]) -> bytes:
        return "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")

    def encode(self, headers: dict[str, str] | bytes, body: bytes) -> bytes:
        head = headers if isinstance(headers, bytes) else self.encode_headers(headers)
        return b"".join((self._prefix, b"content-length: %d\r\n" % len(body), head, b"\r\n", body))

    def take(self) -> _Conn | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.stale:
                return conn
        return None

    def give_back(self, conn: _Conn) -> None:
        if len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.close()

    async def connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                _Conn, self.host, self.port, ssl=self._ssl, server_hostname=self.host if self.tls else None
            )
        except OSError as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc
        return conn

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
