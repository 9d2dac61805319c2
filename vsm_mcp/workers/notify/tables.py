"""Tables of the notifier; migration 0020_workers creates them (tenant-owned, RLS on PostgreSQL).

``notification_channels`` — where a tenant's events go: a kind (telegram | webhook | smtp),
its settings (chat id, URL + signing secret, addresses) and the topic patterns it receives.
``notification_deliveries`` — the ledger: one row per (channel, event) idempotency key with
its state, so one key is sent at most once whatever retries, redeliveries or crashes happen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field

from vsm_mcp.models import JSONType, TenantOwned, new_id


class NotificationChannel(TenantOwned, table=True):
    __tablename__ = "notification_channels"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    enabled: bool = True


class NotificationDelivery(TenantOwned, table=True):
    """States: pending → sending → sent | retrying | failed | uncertain | skipped.

    ``sending`` is committed before the message leaves; finding a row still ``sending`` means the
    sender died mid-send, so it becomes ``uncertain`` instead of being sent again."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    key: str = Field(max_length=255)
    channel_id: str = Field(max_length=36)
    topic: str = Field(default="", max_length=255)
    event_id: str = Field(default="", max_length=64)
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    last_error: str = Field(default="", max_length=2000)
    remote_id: str = Field(default="", max_length=255)
    message: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    sent_at: datetime | None = None
