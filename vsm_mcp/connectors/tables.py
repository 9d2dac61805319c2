"""Connector tables; migration 0028_connectors creates them (tenant-owned, RLS on PostgreSQL).

``connectors`` — one row per configured connector of a tenant: type, base URL, credentials as
``${ENV}`` references only, options, the saved cursor (written only together with the items it
covers), counts, last sync and last error. ``connector_items`` — what a connector synced: one
row per source item with its container and the number of the last sync that saw it (the sweep
mark that finds deletions at sources without a deletion feed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column
from sqlmodel import Field

from vsm_mcp.models import JSONType, TenantOwned


class ConnectorRow(TenantOwned, table=True):
    __tablename__ = "connectors"
    name: str = Field(primary_key=True, max_length=100)
    tenant_id: str = Field(primary_key=True, max_length=36)
    type: str = Field(max_length=32)
    base_url: str = Field(max_length=2048)
    credentials: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    cursor: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    counts: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    syncs: int = 0
    state: str = Field(default="idle", max_length=16)  # idle | running | failed
    last_sync_at: datetime | None = None
    last_error: str = Field(default="", max_length=2000)


class ConnectorItem(TenantOwned, table=True):
    __tablename__ = "connector_items"
    tenant_id: str = Field(primary_key=True, max_length=36)
    connector: str = Field(primary_key=True, max_length=100)
    external_id: str = Field(primary_key=True, max_length=512)
    container_id: str = Field(default="", max_length=36)
    seen: int = 0  # the sync that last saw it at the source
    modified: str = Field(default="", max_length=64)
    title: str = Field(default="", max_length=500)
