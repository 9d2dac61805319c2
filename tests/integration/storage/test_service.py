"""CBCP + objects through StorageService, run against every backend (SQLite metadata).

PostgreSQL row-level security for the same paths is covered by test_postgres.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta

import anyio
import anyio.lowlevel
import pytest

from vsm_mcp.bus import MemoryBus
from vsm_mcp.errors import Conflict, InvalidArguments, NotFound, QuotaExceeded
from vsm_mcp.models import utcnow
from vsm_mcp.storage import StorageService
from vsm_mcp.storage.buckets import BucketPolicy, create_bucket, set_policy, usage
from vsm_mcp.storage.lifecycle import sweep_bucket
from vsm_mcp.storage.service import blob_key

from .traversal import MALICIOUS_KEYS

pytestmark = pytest.mark.anyio
Env = tuple[StorageService, str, str]


async def blobs(svc: StorageService, tenant: str) -> list[str]:
    out, after = [], ""
    while True:
        page = await svc.backend("default").list(f"{tenant}/", after=after, limit=100)
        out += [i.key for i in page.items]
        if page.next_after is None:
            return out
        after = page.next_after


async def test_round_trip_metadata_range_and_overwrite(storage_env: Env) -> None:
    svc, a, _ = storage_env
    row = await svc.put(a, "docs", "x/readme.txt", b"hello world", content_type="text/plain", meta={"k": "v"})
    assert (row.size, row.sha256) == (11, hashlib.sha256(b"hello world").hexdigest())
    st = await svc.stat(a, "docs", "x/readme.txt")
    assert (st.content_type, st.meta) == ("text/plain", {"k": "v"})
    assert (await svc.read(a, "docs", "x/readme.txt", start=6))[1] == b"world"
    await svc.put(a, "docs", "x/readme.txt", b"bye")
    assert (await svc.read(a, "docs", "x/readme.txt"))[1] == b"bye"
    assert await blobs(svc, a) == [blob_key(a, "docs", (await svc.stat(a, "docs", "x/readme.txt")).id)]
    u = await usage(svc.db, a, "docs")
    assert (u.objects, u.bytes) == (1, 3)


async def test_listing_pagination_and_prefix(storage_env: Env) -> None:
    svc, a, _ = storage_env
    for i in range(12):
        await svc.put(a, "b1", f"logs/{i:02d}", b"x")
    await svc.put(a, "b1", "logs_other", b"x")
    await svc.put(a, "b1", "100%_real", b"x")
    seen, after = [], ""
    while True:
        rows, nxt = await svc.list_objects(a, "b1", prefix="logs/", after=after, limit=5)
        seen += [r.key for r in rows]
        if nxt is None:
            break
        after = nxt
    assert seen == [f"logs/{i:02d}" for i in range(12)]
    assert [r.key for r in (await svc.list_objects(a, "b1", prefix="100%"))[0]] == ["100%_real"]


async def test_delete_and_not_found(storage_env: Env) -> None:
    svc, a, _ = storage_env
    await svc.put(a, "b1", "k", b"v")
    assert await svc.delete(a, "b1", "k") is True
    assert await svc.delete(a, "b1", "k") is False
    assert await blobs(svc, a) == []
    with pytest.raises(NotFound):
        await svc.read(a, "b1", "k")
    with pytest.raises(NotFound, match="no bucket"):
        await svc.read(a, "nope", "k")


async def test_byte_quota_leaves_nothing_half_written(storage_env: Env) -> None:
    svc, a, _ = storage_env
    await create_bucket(svc.db, a, "q", BucketPolicy(quota_bytes=3 * 1024 * 1024), svc.backend_names)
    await svc.put(a, "q", "keep", b"k" * (2 * 1024 * 1024))

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(4):  # 4 MiB, no size hint: the limit trips mid-stream
            yield b"z" * (1024 * 1024)

    with pytest.raises(QuotaExceeded):
        await svc.put(a, "q", "new", stream())
    with pytest.raises(QuotaExceeded):
        await svc.put(a, "q", "keep", stream(), size_hint=4 * 1024 * 1024)
    assert len(await blobs(svc, a)) == 1
    assert (await svc.read(a, "q", "keep"))[1] == b"k" * (2 * 1024 * 1024)
    with pytest.raises(NotFound):
        await svc.stat(a, "q", "new")
    # overwriting frees the old size: 3 MiB replacing 2 MiB fits a 3 MiB quota
    await svc.put(a, "q", "keep", b"n" * (3 * 1024 * 1024))
    assert (await usage(svc.db, a, "q")).bytes == 3 * 1024 * 1024


async def test_object_quota(storage_env: Env) -> None:
    svc, a, _ = storage_env
    await create_bucket(svc.db, a, "few", BucketPolicy(quota_objects=2), svc.backend_names)
    await svc.put(a, "few", "1", b"a")
    await svc.put(a, "few", "2", b"b")
    await svc.put(a, "few", "2", b"overwrite is fine")
    with pytest.raises(QuotaExceeded, match="object quota"):
        await svc.put(a, "few", "3", b"c")
    assert len(await blobs(svc, a)) == 2


async def test_concurrent_puts_cannot_overshoot_the_quota(storage_env: Env) -> None:
    svc, a, _ = storage_env
    await create_bucket(svc.db, a, "tight", BucketPolicy(quota_objects=2, quota_bytes=10_000), svc.backend_names)
    outcomes: list[str] = []

    async def put(i: int) -> None:
        try:
            await svc.put(a, "tight", f"k{i}", bytes(1000))
            outcomes.append("ok")
        except QuotaExceeded:
            outcomes.append("quota")

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(put, i)
    assert sorted(outcomes) == ["ok", "ok"] + ["quota"] * 4
    assert (await usage(svc.db, a, "tight")).objects == 2
    assert len(await blobs(svc, a)) == 2  # the refused puts left no bytes behind


async def test_lifecycle_expiry(storage_env: Env) -> None:
    svc, a, _ = storage_env
    await create_bucket(svc.db, a, "tmp", BucketPolicy(expire_days=7), svc.backend_names)
    await svc.put(a, "tmp", "old", b"1")
    report = await sweep_bucket(svc, a, "tmp", now=utcnow() + timedelta(days=1))
    assert report.expired == 0 and await svc.stat(a, "tmp", "old")
    report = await sweep_bucket(svc, a, "tmp", now=utcnow() + timedelta(days=8))
    assert report.expired == 1
    with pytest.raises(NotFound):
        await svc.stat(a, "tmp", "old")
    assert await blobs(svc, a) == []


async def test_versioning_keeps_last_n(storage_env: Env) -> None:
    svc, a, _ = storage_env
    await create_bucket(svc.db, a, "v", BucketPolicy(versioning=True, keep_versions=2), svc.backend_names)
    for i in range(5):
        await svc.put(a, "v", "doc", f"rev{i}".encode())
    versions = await svc.versions(a, "v", "doc")
    assert len(versions) == 2
    assert [(await svc.backend("default").get(blob_key(a, "v", v.id))) for v in versions] == [b"rev3", b"rev2"]
    assert len(await blobs(svc, a)) == 3
    await svc.delete(a, "v", "doc")  # a delete keeps the last current object as a version
    assert len(await svc.versions(a, "v", "doc")) == 2
    u = await usage(svc.db, a, "v")
    assert (u.objects, u.versions) == (0, 2)


async def test_orphan_blobs_are_reaped(storage_env: Env) -> None:
    svc, a, _ = storage_env
    await svc.put(a, "b1", "real", b"keep")
    orphan = blob_key(a, "b1", "ffffffff-0000-0000-0000-000000000000")
    await svc.backend("default").put(orphan, b"left by a crash")
    assert (await sweep_bucket(svc, a, "b1")).orphans_removed == 0  # too young: may be committing
    report = await sweep_bucket(svc, a, "b1", now=utcnow() + timedelta(hours=2))
    assert report.orphans_removed == 1
    assert len(await blobs(svc, a)) == 1 and (await svc.read(a, "b1", "real"))[1] == b"keep"


async def test_traversal_keys_rejected(storage_env: Env) -> None:
    svc, a, _ = storage_env
    await svc.put(a, "b1", "fine", b"ok")
    for key in MALICIOUS_KEYS:  # one loop, not one test each: the fixture is the expensive part
        with pytest.raises(InvalidArguments):
            await svc.put(a, "b1", key, b"pwned")
        for op in (svc.read, svc.stat, svc.delete):
            with pytest.raises(InvalidArguments):
                await op(a, "b1", key)
    assert len(await blobs(svc, a)) == 1


@pytest.mark.parametrize("name", ["..", "A", "a/b", "", "x" * 64, "-a", "a b"])
async def test_bad_bucket_names_rejected(storage_env: Env, name: str) -> None:
    svc, a, _ = storage_env
    with pytest.raises(InvalidArguments, match="bucket"):
        await svc.put(a, name, "k", b"v")


async def test_concurrent_writers_same_key(storage_env: Env) -> None:
    svc, a, _ = storage_env
    bodies = [bytes([97 + i]) * (300_000 + i) for i in range(5)]

    async def writer(data: bytes) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for j in range(0, len(data), 50_000):
                await anyio.lowlevel.checkpoint()
                yield data[j : j + 50_000]

        await svc.put(a, "race", "same", chunks())

    await svc.put(a, "race", "same", b"initial")
    async with anyio.create_task_group() as tg:
        for b in bodies:
            tg.start_soon(writer, b)
    row, got = await svc.read(a, "race", "same")
    assert got in bodies and row.sha256 == hashlib.sha256(got).hexdigest()
    assert len(await blobs(svc, a)) == 1  # every replaced blob was removed
    assert (await usage(svc.db, a, "race")).objects == 1


async def test_cross_tenant_access_denied(storage_env: Env) -> None:
    svc, a, b = storage_env
    await svc.put(a, "shared-name", "secret", b"alpha only")
    with pytest.raises(NotFound):
        await svc.read(b, "shared-name", "secret")
    await svc.put(b, "shared-name", "other", b"beta")  # b's own bucket of the same name
    with pytest.raises(NotFound):
        await svc.read(b, "shared-name", "secret")
    assert [r.key for r in (await svc.list_objects(b, "shared-name"))[0]] == ["other"]
    assert await svc.delete(b, "shared-name", "secret") is False
    assert (await svc.read(a, "shared-name", "secret"))[1] == b"alpha only"


async def test_policy_validation_names_the_field(storage_env: Env) -> None:
    svc, a, _ = storage_env
    await create_bucket(svc.db, a, "p", BucketPolicy(), svc.backend_names)
    with pytest.raises(Conflict):
        await create_bucket(svc.db, a, "p", BucketPolicy(), svc.backend_names)
    for changes, field in [({"quota_bytes": -1}, "quota_bytes"), ({"expire_days": 0}, "expire_days"),
                           ({"backend": "nowhere"}, "backend"), ({"colour": 1}, "colour")]:
        with pytest.raises(InvalidArguments, match=field):
            await set_policy(svc.db, a, "p", changes, svc.backend_names)
    row = await set_policy(svc.db, a, "p", {"quota_objects": 5}, svc.backend_names)
    assert row.quota_objects == 5


@pytest.mark.parametrize("backend_url", ["memory://"])
async def test_put_and_delete_publish_events(storage_env: Env) -> None:
    svc, a, _ = storage_env
    bus = MemoryBus()
    svc.bus = bus
    sub = await bus.subscribe(["storage.object.#"])
    try:
        await svc.put(a, "ev", "k", b"data")
        await svc.delete(a, "ev", "k")
        got = []
        with anyio.fail_after(10):
            async for event in sub:
                got.append((event.topic, event.tenant, event.data["key"], event.data["size"]))
                if len(got) == 2:
                    break
    finally:
        await sub.aclose()
    assert got == [("storage.object.put", a, "k", 4), ("storage.object.deleted", a, "k", 4)]
