"""Events: the durable event log (SSE replay), tenant-owned with RLS on PostgreSQL.

Revision ID: 0007_events
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from vsm_mcp.db import rls_statements

revision = "0007_events"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "event_log",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(36), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trace_id", sa.String(64), nullable=False),
        sa.Column("data", JSON, nullable=False),
    )
    # Replay reads "this tenant's events after id X" in id order.
    op.create_index("ix_event_log_tenant_id_id", "event_log", ["tenant_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        for stmt in rls_statements("event_log"):
            op.execute(stmt)


def downgrade() -> None:
    op.drop_index("ix_event_log_tenant_id_id", table_name="event_log")
    op.drop_table("event_log")
