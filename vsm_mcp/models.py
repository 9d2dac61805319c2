"""SQLModel tables.

Every tenant-owned table has ``tenant_id`` (a UUID held as text: with no tenant set,
``current_setting('app.tenant_id', true)`` is NULL or '' and compares false with no cast
error) and ``created_at``/``updated_at``. ``TENANT_OWNED`` lists them for row-level security
(PostgreSQL, migrations/) and for the data layer's automatic tenant filter (vsm_mcp/db.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, LargeBinary, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class TenantOwned(SQLModel):
    """Mixin: the columns every tenant-owned table carries."""

    tenant_id: str = Field(index=True, max_length=36)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(unique=True, index=True, max_length=128)
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    disabled_at: datetime | None = None  # set: every key of the tenant is refused (vsm_mcp/tenant_lifecycle.py)


class ApiKey(TenantOwned, table=True):
    __tablename__ = "api_keys"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(default="", max_length=128)
    prefix: str = Field(max_length=16, description="first characters of the key, shown in listings")
    key_hash: str = Field(unique=True, index=True, max_length=64)
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    revoked_at: datetime | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None  # noted once per cache fill of the authenticator, not per request


class SystemState(TenantOwned, table=True):
    """The state of one VSM system (s1…s5) or named subsystem of a tenant.

    Written by the episode analyzer (vsm_mcp/workers, issue 20): per-tenant rollups of episodes."""

    __tablename__ = "system_states"
    __table_args__ = (UniqueConstraint("tenant_id", "system"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    system: str = Field(max_length=64)
    health: float = 1.0
    state: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))


class Episode(TenantOwned, table=True):
    """One tool call as the dispatch pipeline saw it (S3* audit)."""

    __tablename__ = "episodes"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    principal_id: str = Field(default="", max_length=64)
    server: str = Field(index=True, max_length=128)
    tool: str = Field(max_length=128)
    outcome: str = Field(max_length=32, description="ok | tool_error | <error label>")
    duration_ms: float = 0.0
    args_sha256: str = Field(default="", max_length=64)
    error: str = Field(default="", max_length=2000)
    trace_id: str = Field(default="", max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))


class Policy(TenantOwned, table=True):
    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("tenant_id", "name", "version"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(max_length=128)
    version: int = 1
    active: bool = True
    source: str = ""
    wasm: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))


class Artifact(TenantOwned, table=True):
    """Metadata of one stored object (the bytes live in a storage backend)."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("tenant_id", "bucket", "key"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    bucket: str = Field(max_length=128)
    key: str = Field(max_length=1024)
    size: int = 0
    sha256: str = Field(default="", max_length=64)
    content_type: str = Field(default="application/octet-stream", max_length=255)
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))


TENANT_OWNED: tuple[type[TenantOwned], ...] = (ApiKey, SystemState, Episode, Policy, Artifact)
