"""Tables of the CEP server; migration 0021_cep creates them (tenant-owned, RLS on PostgreSQL).

``cep_rules`` holds each tenant's rules (text, action, the owner whose principal runs the
action). ``cep_timers`` holds the armed timers — absence deadlines and open tumbling windows —
so a restart re-arms them at the same deadlines. Sequences and sliding windows are not
persisted: CEP matching runs in memory; only its timers and actions are durable (DESIGN.md).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Float, PrimaryKeyConstraint
from sqlmodel import Field

from vsm_mcp.models import JSONType, TenantOwned


class CepRuleRow(TenantOwned, table=True):
    __tablename__ = "cep_rules"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "name"),)
    name: str = Field(max_length=64)
    source: str = Field(max_length=4000)
    version: str = Field(max_length=32)
    enabled: bool = True
    action: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    owner: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    description: str = Field(default="", max_length=1000)


class CepTimerRow(TenantOwned, table=True):
    __tablename__ = "cep_timers"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "rule", "key_hash"),)
    rule: str = Field(max_length=64)
    key_hash: str = Field(max_length=64)
    version: str = Field(max_length=32)
    deadline: float = Field(sa_column=Column(Float, nullable=False))
    state: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
