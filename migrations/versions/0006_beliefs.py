"""Beliefs CRDT: belief_log (write-ahead log of deltas) and belief_snapshots; RLS on PostgreSQL.

Revision ID: 0006_beliefs
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

from vsm_mcp.db import rls_statements

revision = "0006_beliefs"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def _tenant_cols() -> list[sa.Column]:
    return [
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "belief_log",
        *_tenant_cols(),
        sa.Column("replica", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "replica", "seq"),
    )
    op.create_table(
        "belief_snapshots",
        *_tenant_cols(),
        sa.Column("replica", sa.String(64), nullable=False),
        sa.Column("upto_seq", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "replica"),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in ("belief_log", "belief_snapshots"):
            for stmt in rls_statements(table):
                op.execute(stmt)


def downgrade() -> None:
    op.drop_table("belief_snapshots")
    op.drop_table("belief_log")
