"""The ``Storage`` protocol every backend implements, and the small types it speaks.

A backend stores opaque bytes under validated keys. Contract, tested on every backend by
``tests/integration/storage/test_backends.py``:

* ``put`` takes bytes or an async byte stream and is all-or-nothing: if the stream raises
  (a dropped client, a quota limiter) nothing is stored and an existing object is untouched;
  concurrent puts of one key leave exactly one of the complete bodies.
* ``open`` returns a reader that streams the object (or a byte range) in chunks; it raises
  NotFound before the first byte, so an HTTP edge can still answer 404.
* objects larger than ``CHUNK_SIZE`` are never held whole in memory (file and s3 backends).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from vsm_mcp.errors import InvalidArguments

CHUNK_SIZE = 1024 * 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"

Body = bytes | AsyncIterable[bytes]


@dataclass(frozen=True)
class ObjectInfo:
    """What a backend knows about one stored object. ``sha256`` is '' when the backend can't tell cheaply."""

    key: str
    size: int
    modified: datetime
    sha256: str = ""
    content_type: str = DEFAULT_CONTENT_TYPE


@dataclass(frozen=True)
class ObjectPage:
    """One page of a listing, in key order; pass ``next_after`` back as ``after`` for the next page."""

    items: list[ObjectInfo] = field(default_factory=list)
    next_after: str | None = None


class ObjectReader(Protocol):
    """An opened object: its info, the byte range served, and an async iterator over the bytes."""

    info: ObjectInfo
    start: int
    end: int  # exclusive

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Storage(Protocol):
    """A key → bytes store. Keys are validated by the backend (``keys.validate_key``)."""

    url: str

    async def put(self, key: str, body: Body, *, content_type: str = DEFAULT_CONTENT_TYPE) -> ObjectInfo: ...

    async def open(self, key: str, *, start: int = 0, end: int | None = None) -> ObjectReader: ...

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes: ...

    async def delete(self, key: str) -> bool: ...

    async def exists(self, key: str) -> bool: ...

    async def stat(self, key: str) -> ObjectInfo: ...

    async def list(self, prefix: str = "", *, after: str = "", limit: int = 1000) -> ObjectPage: ...

    async def aclose(self) -> None: ...


async def iter_body(body: Body, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    """Yield ``body`` in chunks: bytes are sliced to ``chunk_size``; a stream's small pieces (an HTTP
    server hands over ~64 KiB at a time) are gathered up to ``chunk_size`` so a backend writes in
    few large calls, and a large piece passes through as it is. Memory stays about one chunk."""
    if isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body)
        for i in range(0, len(data), chunk_size):
            yield data[i : i + chunk_size]
        return
    pending = bytearray()
    async for chunk in body:
        if not pending and len(chunk) >= chunk_size:
            yield bytes(chunk)
            continue
        pending += chunk
        if len(pending) >= chunk_size:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


class Hasher:
    """Running sha256 + byte count of a stream as it passes through."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._h.update(chunk)
        self.size += len(chunk)

    @property
    def hexdigest(self) -> str:
        return self._h.hexdigest()


def check_range(size: int, start: int, end: int | None) -> tuple[int, int]:
    """Clamp a requested ``[start, end)`` to an object of ``size`` bytes; an impossible range is InvalidArguments."""
    if start < 0 or (end is not None and end < start):
        raise InvalidArguments(f"invalid byte range start={start} end={end}", data={"field": "range"})
    stop = size if end is None else min(end, size)
    if start > size or (start == size and size > 0):
        raise InvalidArguments(
            f"byte range starts at {start} but the object has {size} bytes", data={"field": "range", "size": size}
        )
    return start, stop


async def collect(reader: ObjectReader) -> bytes:
    """Read an opened object into memory (for small objects and tests)."""
    parts: list[bytes] = []
    try:
        async for chunk in reader:
            parts.append(chunk)
    finally:
        await reader.aclose()
    return b"".join(parts)
