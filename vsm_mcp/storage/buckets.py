"""CBCP, the bucket control plane: buckets, their policy (backend, quota, lifecycle) and usage.

Every function takes the tenant explicitly and reads/writes only through
``Database.tenant(tenant)``, so row-level security (PostgreSQL) and the data layer's tenant
filter decide what is visible: another tenant's bucket of the same name simply does not exist.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from vsm_mcp.db import Database
from vsm_mcp.errors import Conflict, InvalidArguments, NotFound
from vsm_mcp.models import Artifact, utcnow
from vsm_mcp.storage.keys import validate_bucket
from vsm_mcp.storage.models import Bucket, ObjectVersion


@dataclass(frozen=True)
class BucketPolicy:
    """The settable part of a bucket. ``None`` = unlimited / never."""

    backend: str = "default"
    quota_bytes: int | None = None
    quota_objects: int | None = None
    expire_days: float | None = None
    versioning: bool = False
    keep_versions: int | None = None

    def check(self, backends: set[str]) -> BucketPolicy:
        """Raise InvalidArguments naming the first bad field."""
        if self.backend not in backends:
            raise InvalidArguments(
                f"unknown backend {self.backend!r}; configured: {', '.join(sorted(backends))}",
                data={"field": "backend"},
            )
        for name in ("quota_bytes", "quota_objects", "keep_versions"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise InvalidArguments(f"{name} must be a whole number >= 0 or null", data={"field": name})
        if self.expire_days is not None and not self.expire_days > 0:
            raise InvalidArguments("expire_days must be > 0 or null", data={"field": "expire_days"})
        return self


@dataclass(frozen=True)
class Usage:
    """What a bucket holds now. ``bytes`` counts current objects and kept versions."""

    objects: int
    bytes: int
    versions: int
    version_bytes: int


def bucket_dict(bucket: Bucket, usage: Usage | None = None) -> dict[str, Any]:
    """The JSON shape tools and the edge return for a bucket."""
    out: dict[str, Any] = {"name": bucket.name}
    out.update({f.name: getattr(bucket, f.name) for f in fields(BucketPolicy)})
    out["created_at"] = bucket.created_at.isoformat()
    out["last_swept_at"] = bucket.last_swept_at.isoformat() if bucket.last_swept_at else None
    if usage is not None:
        out["usage"] = asdict(usage)
    return out


async def get_bucket(db: Database, tenant: str, name: str) -> Bucket:
    validate_bucket(name)
    async with db.tenant(tenant) as s:
        row = (await s.execute(select(Bucket).where(Bucket.name == name))).scalars().first()
    if row is None:
        raise NotFound(f"no bucket {name!r} (create it with bucket_create)", data={"bucket": name})
    return row


async def create_bucket(db: Database, tenant: str, name: str, policy: BucketPolicy, backends: set[str]) -> Bucket:
    """Create a bucket; Conflict when this tenant already has one of that name."""
    validate_bucket(name)
    policy.check(backends)
    row = Bucket(tenant_id=tenant, name=name, **asdict(policy))
    try:
        async with db.tenant(tenant) as s:
            s.add(row)
    except IntegrityError:
        raise Conflict(f"bucket {name!r} already exists", data={"bucket": name}) from None
    return row


async def ensure_bucket(db: Database, tenant: str, name: str, backends: set[str]) -> Bucket:
    """The bucket, created with the default policy when missing (VSM_STORAGE_AUTO_CREATE_BUCKETS)."""
    try:
        return await get_bucket(db, tenant, name)
    except NotFound:
        try:
            return await create_bucket(db, tenant, name, BucketPolicy(), backends)
        except Conflict:  # created concurrently
            return await get_bucket(db, tenant, name)


async def set_policy(db: Database, tenant: str, name: str, changes: dict[str, Any], backends: set[str]) -> Bucket:
    """Change some policy fields; unknown field names are InvalidArguments.

    The backend of a bucket that holds objects cannot change (its bytes would be stranded).
    """
    allowed = {f.name for f in fields(BucketPolicy)}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise InvalidArguments(f"unknown policy field {unknown[0]!r}; settable: {', '.join(sorted(allowed))}")
    async with db.tenant(tenant) as s:
        row = (await s.execute(select(Bucket).where(Bucket.name == validate_bucket(name)))).scalars().first()
        if row is None:
            raise NotFound(f"no bucket {name!r}", data={"bucket": name})
        current = {f.name: getattr(row, f.name) for f in fields(BucketPolicy)}
        policy = BucketPolicy(**{**current, **changes}).check(backends)
        if policy.backend != row.backend:
            count = (await s.execute(select(func.count()).select_from(Artifact).where(Artifact.bucket == name))).scalar_one()
            if count:
                raise Conflict(f"bucket {name!r} holds {count} objects; its backend cannot change")
        for key, value in asdict(policy).items():
            setattr(row, key, value)
        row.updated_at = utcnow()
    return row


async def list_buckets(db: Database, tenant: str) -> list[Bucket]:
    async with db.tenant(tenant) as s:
        return list((await s.execute(select(Bucket).order_by(Bucket.name))).scalars())


async def usage(db: Database, tenant: str, name: str) -> Usage:
    """Object and byte counts of one bucket (one aggregate query per table)."""
    async with db.tenant(tenant) as s:
        return await usage_in(s, name)


async def usage_in(s: AsyncSession, name: str) -> Usage:
    """``usage`` inside an open tenant session (the quota re-check at commit uses it)."""
    objs, size = (
        await s.execute(
            select(func.count(), func.coalesce(func.sum(Artifact.size), 0))
            .select_from(Artifact)
            .where(Artifact.bucket == name)
        )
    ).one()
    vers, vsize = (
        await s.execute(
            select(func.count(), func.coalesce(func.sum(ObjectVersion.size), 0))
            .select_from(ObjectVersion)
            .where(ObjectVersion.bucket == name)
        )
    ).one()
    return Usage(objects=int(objs), bytes=int(size) + int(vsize), versions=int(vers), version_bytes=int(vsize))
