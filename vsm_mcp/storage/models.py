"""Tables of the bucket control plane (migration 0003_storage).

Object metadata lives in the foundation's ``artifacts`` table: one row per current object,
whose ``id`` also names the object's blob in the backend (``<tenant>/<bucket>/<id[:2]>/<id>``),
so every write goes to a fresh blob and replacing an object is one row swap.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field

from vsm_mcp.models import TenantOwned, new_id


class Bucket(TenantOwned, table=True):
    """A tenant's bucket: where its bytes live, how much it may hold, how long objects live."""

    __tablename__ = "storage_buckets"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(max_length=64)
    backend: str = Field(default="default", max_length=64, description="a name from VSM_STORAGE_BACKENDS")
    quota_bytes: int | None = None
    quota_objects: int | None = None
    expire_days: float | None = None
    versioning: bool = False
    keep_versions: int | None = None
    last_swept_at: datetime | None = None


class ObjectVersion(TenantOwned, table=True):
    """A noncurrent version kept by a versioned bucket (``updated_at`` = when it was replaced)."""

    __tablename__ = "storage_versions"
    id: str = Field(primary_key=True, max_length=36, description="the blob id it had while current")
    bucket: str = Field(max_length=64, index=True)
    key: str = Field(max_length=1024)
    size: int = 0
    sha256: str = Field(default="", max_length=64)
    content_type: str = Field(default="application/octet-stream", max_length=255)


STORAGE_TABLES: tuple[type[TenantOwned], ...] = (Bucket, ObjectVersion)
