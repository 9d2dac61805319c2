"""Planner: plans and plan_steps (tenant-owned, RLS on PostgreSQL).

Revision ID: 0023_planner
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from vsm_mcp.db import rls_statements

revision = "0023_planner"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _tenant_cols() -> list[sa.Column]:
    return [
        sa.Column("tenant_id", sa.String(36), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("id", sa.String(36), primary_key=True),
        *_tenant_cols(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("goal", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner_key", sa.String(64), nullable=False),
        sa.Column("owner_scopes", JSON, nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("pause_reason", sa.String(500), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_plans_tenant_created", "plans", ["tenant_id", "created_at"])
    op.create_table(
        "plan_steps",
        sa.Column("id", sa.String(110), primary_key=True),
        *_tenant_cols(),
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("tool", sa.String(128), nullable=False),
        sa.Column("run", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("result", JSON, nullable=True),
        sa.Column("arguments", JSON, nullable=True),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("assigned_to", sa.String(128), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handoff", JSON, nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("decision_result", JSON, nullable=True),
    )
    op.create_index("ix_plan_steps_tenant_plan", "plan_steps", ["tenant_id", "plan_id"])
    op.create_index("ix_plan_steps_claim", "plan_steps", ["tenant_id", "run", "state"])
    if op.get_bind().dialect.name == "postgresql":
        for table in ("plans", "plan_steps"):
            for stmt in rls_statements(table):
                op.execute(stmt)


def downgrade() -> None:
    op.drop_table("plan_steps")
    op.drop_table("plans")
