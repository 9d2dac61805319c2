"""Connectors (issue 23): connectors and connector_items; RLS on PostgreSQL.

Revision ID: 0028_connectors
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from vsm_mcp.db import rls_statements

revision = "0028_connectors"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _times() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "connectors",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        *_times(),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("base_url", sa.String(2048), nullable=False),
        sa.Column("credentials", JSON, nullable=False),
        sa.Column("options", JSON, nullable=False),
        sa.Column("cursor", JSON, nullable=True),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("syncs", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(2000), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "name"),
    )
    op.create_table(
        "connector_items",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("connector", sa.String(100), nullable=False),
        sa.Column("external_id", sa.String(512), nullable=False),
        *_times(),
        sa.Column("container_id", sa.String(36), nullable=False),
        sa.Column("seen", sa.Integer(), nullable=False),
        sa.Column("modified", sa.String(64), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "connector", "external_id"),
    )
    op.create_index("ix_connector_items_seen", "connector_items", ["tenant_id", "connector", "seen"])
    if op.get_bind().dialect.name == "postgresql":
        for table in ("connectors", "connector_items"):
            for stmt in rls_statements(table):
                op.execute(stmt)


def downgrade() -> None:
    op.drop_index("ix_connector_items_seen", table_name="connector_items")
    op.drop_table("connector_items")
    op.drop_table("connectors")
