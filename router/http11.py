"""A minimal HTTP/1.1 client for the router's hot path: POST a JSON body, stream the answer.

Why not httpx: per request, httpcore's pure-Python h11 state machine and its layers cost more
CPU than everything else the router does for a call. This client keeps a small pool of
persistent connections (asyncio streams), writes one request in one write, and reads the
response with ``Content-Length`` or chunked framing. It does exactly what the upstream call
needs — nothing else (no redirects, no cookies, no proxies, no HTTP/2); everything else keeps
using httpx.

``post(path, headers, body)`` is an async context manager yielding ``Response``, whose
``chunks()`` async-iterates the decoded body. A connection is reused only when its response
was read to the end and the server did not ask to close it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit


class HttpError(ConnectionError):
    """The connection broke or the server spoke something that is not HTTP/1.1."""


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        self.writer.close()


class Response:
    def __init__(self, conn: _Conn, status: int, headers: dict[str, str]) -> None:
        self._conn = conn
        self.status = status
        self.headers = headers
        self.complete = False
        length = headers.get("content-length")
        self._length = int(length) if length is not None and length.isdigit() else None
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()

    async def chunks(self) -> AsyncIterator[bytes]:
        r = self._conn.reader
        if self._chunked:
            while True:
                size_line = await r.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    await r.readuntil(b"\r\n")  # no trailers from our upstreams; the final CRLF
                    break
                data = await r.readexactly(size + 2)
                yield data[:-2]
        elif self._length is not None:
            if self._length:
                yield await r.readexactly(self._length)
        else:  # read to EOF; the connection cannot be reused
            self.headers["connection"] = "close"
            while chunk := await r.read(65536):
                yield chunk
        self.complete = True

    async def read(self) -> bytes:
        return b"".join([c async for c in self.chunks()])


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

    async def _connect(self) -> _Conn:
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self._ssl, limit=1 << 22)
        return _Conn(reader, writer)

    @asynccontextmanager
    async def post(self, headers: dict[str, str], body: bytes) -> AsyncIterator[Response]:
        head = [f"POST {self.path} HTTP/1.1", f"host: {self.host_header}", f"content-length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        conn, reused = (self._idle.pop(), True) if self._idle else (await self._connect(), False)
        try:
            resp = await self._exchange(conn, request)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            conn.close()
            if not reused:
                raise HttpError(f"{type(exc).__name__}: {exc}") from exc
            # A kept-alive connection the server had already closed: retry once on a fresh one.
            conn = await self._connect()
            try:
                resp = await self._exchange(conn, request)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc2:
                conn.close()
                raise HttpError(f"{type(exc2).__name__}: {exc2}") from exc2
        try:
            yield resp
        except BaseException:
            conn.close()
            raise
        if resp.complete and resp.headers.get("connection", "").lower() != "close" and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.close()

    async def _exchange(self, conn: _Conn, request: bytes) -> Response:
        conn.writer.write(request)
        await conn.writer.drain()
        raw = await conn.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        proto, _, rest = lines[0].partition(" ")
        if not proto.startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        return Response(conn, int(rest.split(" ", 1)[0]), headers)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
