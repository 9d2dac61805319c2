"""Tables of the content server; migration 0022_content creates them (tenant-owned, RLS on PostgreSQL).

``content_containers`` — one row per semantic container: its source (unique per tenant: the
fetched URL after redirects, ``storage:<bucket>/<key>`` or ``<connector>:<external id>``), the
current version, what the search index holds (``indexed_sha``), metadata, lineage, policy,
capabilities, status (``ok`` | ``failed`` | ``deleting``) and the last error.
``content_versions`` — immutable versions, content-addressed: one row per distinct sha256 of the
normalized text of a container (unique), numbered 1, 2, …; the normalized text and where the
original bytes are stored.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field

from vsm_mcp.models import JSONType, TenantOwned, new_id

STATUS_OK, STATUS_FAILED, STATUS_DELETING = "ok", "failed", "deleting"


class Container(TenantOwned, table=True):
    __tablename__ = "content_containers"
    __table_args__ = (UniqueConstraint("tenant_id", "source"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    source: str = Field(max_length=2048)
    source_kind: str = Field(max_length=16)  # url | storage | item
    title: str = Field(default="", max_length=500)
    content_type: str = Field(default="", max_length=128)
    language: str = Field(default="", max_length=16)
    status: str = Field(default=STATUS_OK, max_length=16)
    error: str = Field(default="", max_length=2000)
    current_sha: str = Field(default="", max_length=64)
    current_version: int = 0
    indexed_sha: str = Field(default="", max_length=64)
    etag: str = Field(default="", max_length=256)
    last_modified: str = Field(default="", max_length=64)
    lineage: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    policy: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    capabilities: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))


class ContainerVersion(TenantOwned, table=True):
    __tablename__ = "content_versions"
    __table_args__ = (
        UniqueConstraint("container_id", "sha256"),
        UniqueConstraint("container_id", "number"),
        Index("ix_content_versions_container", "container_id", "number"),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    container_id: str = Field(foreign_key="content_containers.id", ondelete="CASCADE", max_length=36)
    number: int
    sha256: str = Field(max_length=64)
    raw_sha256: str = Field(default="", max_length=64)
    size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    content_type: str = Field(default="", max_length=128)
    language: str = Field(default="", max_length=16)
    title: str = Field(default="", max_length=500)
    blob_key: str = Field(default="", max_length=1024)
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    lineage: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
