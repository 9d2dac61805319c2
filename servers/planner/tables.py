"""Tables of the planner; migration 0023_planner creates them (tenant-owned, RLS on PostgreSQL).

They are the plans' *product view* — what plan_status, plan_list and the collaboration tools read
and what leases and decisions are written to. Execution state (which steps completed, their
recorded outputs) is DBOS's; a step's row is written as it starts and ends so a crash leaves the
evidence the engine needs (a row still ``running`` = that call was in flight).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from vsm_mcp.models import TenantOwned

JSONType = JSON().with_variant(JSONB(), "postgresql")


class PlanRow(TenantOwned, table=True):
    __tablename__ = "plans"
    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=200)
    goal: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    state: str = Field(max_length=16)
    owner_key: str = Field(default="", max_length=64)
    owner_scopes: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    trace_id: str = Field(default="", max_length=32)
    spec: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    pause_reason: str = Field(default="", max_length=500)
    error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    started_at: datetime | None = None
    ended_at: datetime | None = None


class PlanStepRow(TenantOwned, table=True):
    __tablename__ = "plan_steps"
    __table_args__ = (
        Index("ix_plan_steps_tenant_plan", "tenant_id", "plan_id"),
        Index("ix_plan_steps_claim", "tenant_id", "run", "state"),
    )
    id: str = Field(primary_key=True, max_length=110)  # "<plan id>:<step id>"
    plan_id: str = Field(max_length=36)
    step_id: str = Field(max_length=64)
    seq: int = 0  # position in the plan's topological order
    tool: str = Field(max_length=128)
    run: str = Field(default="router", max_length=8)
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    arguments: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    agent: str = Field(default="", max_length=128)
    assigned_to: str = Field(default="", max_length=128)
    lease_until: datetime | None = None
    handoff: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    decision: str = Field(default="", max_length=16)
    decision_result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
