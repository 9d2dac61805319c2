"""``memory://`` — objects in a dict, for tests and throw-away runs.

Puts collect the stream first and swap it in at the end, so a failing stream stores nothing.
Bytes are held in memory by definition; use ``file://`` or ``s3://`` for large objects.
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator
from dataclasses import dataclass

from vsm_mcp.errors import NotFound
from vsm_mcp.models import utcnow
from vsm_mcp.storage.base import (
    CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
    Body,
    Hasher,
    ObjectInfo,
    ObjectPage,
    check_range,
    collect,
    iter_body,
)
from vsm_mcp.storage.keys import validate_key, validate_prefix


@dataclass
class _MemoryReader:
    info: ObjectInfo
    start: int
    end: int
    data: bytes

    async def __aiter__(self) -> AsyncIterator[bytes]:
        view = memoryview(self.data)
        for i in range(self.start, self.end, CHUNK_SIZE):
            yield bytes(view[i : min(i + CHUNK_SIZE, self.end)])

    async def aclose(self) -> None:
        return None


class MemoryStorage:
    """A process-local backend. Each instance is its own namespace."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._objects: dict[str, tuple[bytes, ObjectInfo]] = {}

    async def put(self, key: str, body: Body, *, content_type: str = DEFAULT_CONTENT_TYPE) -> ObjectInfo:
        validate_key(key)
        hasher, parts = Hasher(), []
        async for chunk in iter_body(body):
            hasher.update(chunk)
            parts.append(chunk)
        info = ObjectInfo(key, hasher.size, utcnow(), hasher.hexdigest, content_type or DEFAULT_CONTENT_TYPE)
        self._objects[key] = (b"".join(parts), info)  # one assignment: readers see old or new, never a mix
        return info

    async def open(self, key: str, *, start: int = 0, end: int | None = None) -> _MemoryReader:
        data, info = self._lookup(key)
        lo, hi = check_range(info.size, start, end)
        return _MemoryReader(info, lo, hi, data)

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        return await collect(await self.open(key, start=start, end=end))

    async def delete(self, key: str) -> bool:
        validate_key(key)
        return self._objects.pop(key, None) is not None

    async def exists(self, key: str) -> bool:
        validate_key(key)
        return key in self._objects

    async def stat(self, key: str) -> ObjectInfo:
        return self._lookup(key)[1]

    async def list(self, prefix: str = "", *, after: str = "", limit: int = 1000) -> ObjectPage:
        validate_prefix(prefix)
        keys = sorted(k for k in self._objects if k.startswith(prefix))
        pos = bisect.bisect_right(keys, after) if after else 0
        chosen = keys[pos : pos + limit]
        more = pos + limit < len(keys)
        return ObjectPage([self._objects[k][1] for k in chosen], chosen[-1] if more and chosen else None)

    async def aclose(self) -> None:
        return None

    def _lookup(self, key: str) -> tuple[bytes, ObjectInfo]:
        validate_key(key)
        try:
            return self._objects[key]
        except KeyError:
            raise NotFound(f"no object {key!r}", data={"key": key}) from None
