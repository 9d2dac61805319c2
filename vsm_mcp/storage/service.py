"""Tenant-scoped objects on top of the backends: quota, versions, atomic replace.

Layout: an object's bytes live in its bucket's backend under
``<tenant>/<bucket>/<id[:2]>/<id>`` where ``id`` is the ``artifacts`` row id; the row maps
(tenant, bucket, key) to it. A put streams into a fresh blob and then swaps the row in one
transaction (optimistic: delete-the-row-I-saw + insert, retried when another writer won the
race), so readers see the old or the new object, never a mix, and the last complete write
wins. A failed or over-quota put leaves nothing behind: the backend put aborts, no row is added.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from vsm_mcp.bus import Bus
from vsm_mcp.bus.events import Event
from vsm_mcp.config import Settings
from vsm_mcp.db import Database
from vsm_mcp.errors import Conflict, NotFound, QuotaExceeded
from vsm_mcp.models import Artifact, new_id, utcnow
from vsm_mcp.storage import buckets as cbcp
from vsm_mcp.storage.backends import backend_urls, open_storage
from vsm_mcp.storage.base import (
    DEFAULT_CONTENT_TYPE,
    Body,
    ObjectInfo,
    ObjectReader,
    Storage,
    collect,
    iter_body,
)
from vsm_mcp.storage.keys import validate_bucket, validate_key, validate_prefix
from vsm_mcp.storage.models import Bucket, ObjectVersion

COMMIT_ATTEMPTS = 10


class _Lost(Exception):
    """Another writer replaced the row this transaction meant to replace; try again."""


def blob_key(tenant: str, bucket: str, blob_id: str) -> str:
    return f"{tenant}/{bucket}/{blob_id[:2]}/{blob_id}"


def object_dict(row: Artifact | ObjectVersion) -> dict[str, Any]:
    """The JSON shape of an object's metadata."""
    out: dict[str, Any] = {
        "bucket": row.bucket, "key": row.key, "size": row.size, "sha256": row.sha256,
        "content_type": row.content_type, "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }
    if isinstance(row, ObjectVersion):
        out["version_id"] = row.id
    else:
        out["meta"] = row.meta
    return out


async def _limited(body: Body, limit: int | None, bucket: str) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in iter_body(body):
        total += len(chunk)
        if limit is not None and total > limit:
            raise QuotaExceeded(
                f"bucket {bucket!r} is over its byte quota: this object needs more than the {max(limit, 0)} bytes left",
                data={"bucket": bucket},
            )
        yield chunk


class StorageService:
    """Objects of every tenant and bucket. One per process (``servers.storage`` and the edge share it)."""

    def __init__(self, settings: Settings, db: Database, bus: Bus | None = None) -> None:
        self.settings, self.db, self.bus = settings, db, bus
        self.urls = backend_urls(settings)
        self._backends: dict[str, Storage] = {}

    @property
    def backend_names(self) -> set[str]:
        return set(self.urls)

    def backend(self, name: str) -> Storage:
        if name not in self._backends:
            if name not in self.urls:
                raise NotFound(f"storage backend {name!r} is not configured (VSM_STORAGE_BACKENDS)")
            self._backends[name] = open_storage(self.urls[name])
        return self._backends[name]

    async def bucket(self, tenant: str, name: str, *, create: bool = False) -> Bucket:
        if create and self.settings.storage_auto_create_buckets:
            return await cbcp.ensure_bucket(self.db, tenant, name, self.backend_names)
        return await cbcp.get_bucket(self.db, tenant, name)

    async def _current(self, tenant: str, bucket: str, key: str) -> Artifact | None:
        async with self.db.tenant(tenant) as s:
            stmt = select(Artifact).where(Artifact.bucket == bucket, Artifact.key == key)
            return (await s.execute(stmt)).scalars().first()

    # --- writes ----------------------------------------------------------------------
    async def put(
        self, tenant: str, bucket: str, key: str, body: Body, *, content_type: str | None = None,
        size_hint: int | None = None, meta: dict[str, Any] | None = None,
    ) -> Artifact:
        """Store ``body`` at (bucket, key) for ``tenant``; QuotaExceeded leaves everything as it was."""
        validate_bucket(bucket)
        validate_key(key)
        b = await self.bucket(tenant, bucket, create=True)
        limit = await self._room(tenant, b, key, size_hint)
        blob_id = new_id()
        store = self.backend(b.backend)
        bkey = blob_key(tenant, bucket, blob_id)
        info = await store.put(bkey, _limited(body, limit, bucket), content_type=content_type or DEFAULT_CONTENT_TYPE)
        try:
            row, replaced = await self._commit(tenant, b, key, blob_id, info, meta or {})
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await store.delete(bkey)
            raise
        if replaced:
            await self._drop_blob(store, blob_key(tenant, bucket, replaced))
        await self._publish("storage.object.put", tenant, row)
        if b.versioning and b.keep_versions is not None:
            from vsm_mcp.storage.lifecycle import prune_versions

            await prune_versions(self, tenant, b, key)
        return row

    async def _room(self, tenant: str, b: Bucket, key: str, size_hint: int | None) -> int | None:
        """Bytes this put may write (None = unlimited); QuotaExceeded when it cannot fit at all."""
        if b.quota_bytes is None and b.quota_objects is None:
            return None
        use = await cbcp.usage(self.db, tenant, b.name)
        cur = await self._current(tenant, b.name, key)
        if b.quota_objects is not None and cur is None and use.objects + 1 > b.quota_objects:
            raise QuotaExceeded(
                f"bucket {b.name!r} is at its object quota ({b.quota_objects})", data={"bucket": b.name}
            )
        if b.quota_bytes is None:
            return None
        freed = cur.size if cur is not None and not b.versioning else 0
        room = b.quota_bytes - use.bytes + freed
        if size_hint is not None and size_hint > room:
            raise QuotaExceeded(
                f"bucket {b.name!r} is over its byte quota: {size_hint} bytes do not fit in the {max(room, 0)} left",
                data={"bucket": b.name},
            )
        return room

    async def _commit(
        self, tenant: str, b: Bucket, key: str, blob_id: str, info: ObjectInfo, meta: dict[str, Any]
    ) -> tuple[Artifact, str | None]:
        """Swap the row for (bucket, key) to the new blob; returns (row, blob id to delete or None)."""
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                async with self.db.tenant(tenant) as s:
                    limited = b.quota_bytes is not None or b.quota_objects is not None
                    if limited:  # PostgreSQL: commits into one limited bucket take turns (SQLite: one writer anyway)
                        await s.execute(select(Bucket.id).where(Bucket.id == b.id).with_for_update())
                    stmt = select(Artifact).where(Artifact.bucket == b.name, Artifact.key == key)
                    cur = (await s.execute(stmt)).scalars().first()
                    created = utcnow()
                    if cur is not None:
                        gone = await s.execute(delete(Artifact).where(col(Artifact.id) == cur.id))
                        if getattr(gone, "rowcount", 0) != 1:
                            raise _Lost
                        created = cur.created_at
                        if b.versioning:
                            s.add(_as_version(cur, tenant))
                    row = Artifact(
                        id=blob_id, tenant_id=tenant, bucket=b.name, key=key, size=info.size, sha256=info.sha256,
                        content_type=info.content_type, meta=meta, created_at=created,
                    )
                    s.add(row)
                    if limited:
                        await s.flush()
                        _check_quota(b, await cbcp.usage_in(s, b.name))  # raising rolls the swap back
                return row, (cur.id if cur is not None and not b.versioning else None)
            except (_Lost, IntegrityError):
                await anyio.sleep(0.005 * (attempt + 1))
        raise Conflict(f"too many concurrent writers to {b.name}/{key}; retry")

    async def _publish(self, topic: str, tenant: str, row: Artifact) -> None:
        """``storage.object.put`` / ``.deleted`` on the bus (SSE clients can follow a bucket)."""
        if self.bus is not None:
            data = {"bucket": row.bucket, "key": row.key, "size": row.size, "sha256": row.sha256}
            await self.bus.publish(Event(topic=topic, tenant=tenant, type=topic, data=data))

    async def _drop_blob(self, store: Storage, key: str) -> None:
        # Best effort: a blob left behind is unreferenced and removed by the next sweep.
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await store.delete(key)

    async def delete(self, tenant: str, bucket: str, key: str) -> bool:
        """Delete the current object (kept as a version when the bucket is versioned); False if absent."""
        validate_key(key)
        b = await self.bucket(tenant, bucket)
        async with self.db.tenant(tenant) as s:
            stmt = select(Artifact).where(Artifact.bucket == b.name, Artifact.key == key)
            cur = (await s.execute(stmt)).scalars().first()
            if cur is None:
                return False
            gone = await s.execute(delete(Artifact).where(col(Artifact.id) == cur.id))
            if getattr(gone, "rowcount", 0) != 1:
                return False
            if b.versioning:
                s.add(_as_version(cur, tenant))
        await self._publish("storage.object.deleted", tenant, cur)
        if not b.versioning:
            await self._drop_blob(self.backend(b.backend), blob_key(tenant, bucket, cur.id))
        elif b.keep_versions is not None:
            from vsm_mcp.storage.lifecycle import prune_versions

            await prune_versions(self, tenant, b, key)
        return True

    # --- reads -----------------------------------------------------------------------
    async def stat(self, tenant: str, bucket: str, key: str) -> Artifact:
        validate_key(key)
        await self.bucket(tenant, bucket)
        row = await self._current(tenant, bucket, key)
        if row is None:
            raise NotFound(f"no object {key!r} in bucket {bucket!r}", data={"bucket": bucket, "key": key})
        return row

    async def open(
        self, tenant: str, bucket: str, key: str, *, start: int = 0, end: int | None = None
    ) -> tuple[Artifact, ObjectReader]:
        """The object's row and a reader over ``[start, end)``; NotFound before any byte."""
        b = await self.bucket(tenant, bucket)
        store = self.backend(b.backend)
        for _ in range(3):  # the blob may be replaced between reading the row and opening it
            row = await self.stat(tenant, bucket, key)
            try:
                return row, await store.open(blob_key(tenant, bucket, row.id), start=start, end=end)
            except NotFound:
                continue
        raise NotFound(f"no object {key!r} in bucket {bucket!r}", data={"bucket": bucket, "key": key})

    async def read(self, tenant: str, bucket: str, key: str, *, start: int = 0, end: int | None = None) -> tuple[Artifact, bytes]:
        row, reader = await self.open(tenant, bucket, key, start=start, end=end)
        return row, await collect(reader)

    async def list_objects(
        self, tenant: str, bucket: str, *, prefix: str = "", after: str = "", limit: int = 100
    ) -> tuple[list[Artifact], str | None]:
        """A page of current objects in key order and the cursor for the next page (None at the end)."""
        validate_prefix(prefix)
        limit = max(1, min(int(limit), 1000))
        await self.bucket(tenant, bucket)
        async with self.db.tenant(tenant) as s:
            stmt = select(Artifact).where(Artifact.bucket == bucket)
            if prefix:
                stmt = stmt.where(col(Artifact.key).startswith(prefix, autoescape=True))
            if after:
                stmt = stmt.where(col(Artifact.key) > after)
            rows = list((await s.execute(stmt.order_by(col(Artifact.key)).limit(limit + 1))).scalars())
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1].key if more else None)

    async def versions(self, tenant: str, bucket: str, key: str) -> list[ObjectVersion]:
        """Noncurrent versions of a key, newest first."""
        validate_key(key)
        await self.bucket(tenant, bucket)
        async with self.db.tenant(tenant) as s:
            stmt = (
                select(ObjectVersion)
                .where(ObjectVersion.bucket == bucket, ObjectVersion.key == key)
                .order_by(col(ObjectVersion.updated_at).desc(), col(ObjectVersion.id))
            )
            return list((await s.execute(stmt)).scalars())

    async def aclose(self) -> None:
        for store in self._backends.values():
            await store.aclose()
        self._backends.clear()


def _check_quota(b: Bucket, use: cbcp.Usage) -> None:
    """The exact check, inside the committing transaction: concurrent puts cannot both squeeze in."""
    if b.quota_objects is not None and use.objects > b.quota_objects:
        raise QuotaExceeded(f"bucket {b.name!r} is at its object quota ({b.quota_objects})", data={"bucket": b.name})
    if b.quota_bytes is not None and use.bytes > b.quota_bytes:
        raise QuotaExceeded(
            f"bucket {b.name!r} is over its byte quota ({b.quota_bytes} bytes)", data={"bucket": b.name}
        )


def _as_version(row: Artifact, tenant: str) -> ObjectVersion:
    return ObjectVersion(
        id=row.id, tenant_id=tenant, bucket=row.bucket, key=row.key, size=row.size, sha256=row.sha256,
        content_type=row.content_type, created_at=row.created_at, updated_at=utcnow(),
    )


def service_for(ctx: Any) -> StorageService:
    """The process's StorageService, kept in ``ctx.extras`` so the MCP server and the edge share it."""
    svc = ctx.extras.get("storage.service")
    if svc is None:
        svc = ctx.extras["storage.service"] = StorageService(ctx.settings, ctx.db, ctx.bus)
    assert isinstance(svc, StorageService)
    return svc
