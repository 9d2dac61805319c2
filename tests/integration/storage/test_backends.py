"""The Storage contract, run against every backend (memory, file, S3 on a moto server)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from vsm_mcp.errors import InvalidArguments, NotFound
from vsm_mcp.storage import Storage, open_storage
from vsm_mcp.storage.base import CHUNK_SIZE, collect

from .traversal import MALICIOUS_KEYS

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(backend_url: str) -> AsyncIterator[Storage]:
    s = open_storage(backend_url)
    try:
        yield s
    finally:
        await s.aclose()


async def test_round_trip_stat_and_ranges(store: Storage) -> None:
    data = bytes(range(256)) * 40
    info = await store.put("dir/obj.bin", data, content_type="application/x-test")
    assert (info.size, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert await store.get("dir/obj.bin") == data
    assert await store.get("dir/obj.bin", start=10, end=20) == data[10:20]
    assert await store.get("dir/obj.bin", start=len(data) - 5) == data[-5:]
    assert await store.get("dir/obj.bin", start=100, end=10**9) == data[100:]
    st = await store.stat("dir/obj.bin")
    assert st.size == len(data) and st.content_type == "application/x-test"
    assert await store.exists("dir/obj.bin") and not await store.exists("dir/other")
    with pytest.raises(InvalidArguments):
        await store.get("dir/obj.bin", start=len(data) + 1)


async def test_empty_object(store: Storage) -> None:
    await store.put("empty", b"")
    assert await store.get("empty") == b""
    assert (await store.stat("empty")).size == 0


async def test_listing_paginates_in_key_order(store: Storage) -> None:
    keys = sorted(f"p/{i:03d}" for i in range(23)) + ["q/x"]
    for k in keys:
        await store.put(k, k.encode())
    seen: list[str] = []
    after = ""
    while True:
        page = await store.list("p/", after=after, limit=5)
        seen += [i.key for i in page.items]
        assert len(page.items) <= 5
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == keys[:-1]
    assert [i.key for i in (await store.list("q/")).items] == ["q/x"]


async def test_overwrite_delete_not_found(store: Storage) -> None:
    await store.put("k", b"one")
    await store.put("k", b"two!")
    assert await store.get("k") == b"two!"
    assert await store.delete("k") is True
    assert await store.delete("k") is False
    with pytest.raises(NotFound):
        await store.get("k")
    with pytest.raises(NotFound):
        await store.stat("k")


async def test_large_object_streams_in_chunks(store: Storage) -> None:
    size = 9 * CHUNK_SIZE + 123  # > S3 part size: exercises multipart there
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for i in range(size // 65536 + 1):
            chunk = os.urandom(min(65536, size - i * 65536))
            digest.update(chunk)
            yield chunk

    info = await store.put("big", body())
    assert info.size == size and info.sha256 == digest.hexdigest()
    reader = await store.open("big")
    got, biggest = hashlib.sha256(), 0
    async for chunk in reader:
        got.update(chunk)
        biggest = max(biggest, len(chunk))
    assert got.hexdigest() == digest.hexdigest()
    assert biggest <= CHUNK_SIZE  # never handed back whole


async def test_failed_stream_stores_nothing_and_keeps_old(store: Storage) -> None:
    await store.put("k", b"old")

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * CHUNK_SIZE * 9  # past one S3 part: a multipart upload must be aborted
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put("k", broken())
    with pytest.raises(ConnectionResetError):
        await store.put("fresh", broken())
    assert await store.get("k") == b"old"
    assert not await store.exists("fresh")
    assert [i.key for i in (await store.list()).items] == ["k"]


async def test_traversal_keys_rejected(store: Storage, tmp_path: Path) -> None:
    await store.put("inside", b"ok")
    before = _listing(tmp_path)
    for key in MALICIOUS_KEYS:
        with pytest.raises(InvalidArguments):
            await store.put(key, b"pwned")
        for op in (store.get, store.stat, store.delete, store.exists):
            with pytest.raises(InvalidArguments):
                await op(key)
        with pytest.raises(InvalidArguments):
            await store.list(key + "/")
    assert _listing(tmp_path) == before
    assert [i.key for i in (await store.list()).items] == ["inside"]


def _listing(root: Path) -> list[str]:
    assert not os.path.exists("/tmp/owned") and not os.path.exists(root / "escape")
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


async def test_concurrent_writers_last_complete_write_wins(store: Storage) -> None:
    bodies = [bytes([65 + i]) * (CHUNK_SIZE * 2 + i) for i in range(6)]

    async def writer(data: bytes) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for j in range(0, len(data), 65536):
                await anyio.lowlevel.checkpoint()
                yield data[j : j + 65536]

        await store.put("same", chunks())

    async with anyio.create_task_group() as tg:
        for b in bodies:
            tg.start_soon(writer, b)
    got = await store.get("same")
    assert got in bodies  # one complete body, never a mix
    reader = await store.open("same", start=0, end=4)
    assert await collect(reader) == got[:4]
