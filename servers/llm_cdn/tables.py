"""Tables of the shared (PostgreSQL) LLM cache; migration 0004_llm_cache creates them.

``llm_cache`` holds answers, ``llm_inflight`` marks a request some replica is computing right
now (cross-replica single-flight). Both are tenant-owned: row-level security partitions them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, LargeBinary, PrimaryKeyConstraint
from sqlmodel import Field

from vsm_mcp.models import TenantOwned


class LlmCacheRow(TenantOwned, table=True):
    __tablename__ = "llm_cache"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "key"),)
    key: str = Field(max_length=64)
    model: str = Field(max_length=256, index=True)
    kind: str = Field(max_length=16)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    size: int = 0
    tokens: int = 0
    expires_at: datetime


class LlmInflightRow(TenantOwned, table=True):
    __tablename__ = "llm_inflight"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "key"),)
    key: str = Field(max_length=64)
    owner: str = Field(max_length=64)
    expires_at: datetime
