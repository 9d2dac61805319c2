"""CEP: cep_rules (rules per tenant) and cep_timers (armed absence deadlines and open tumbling
windows, re-armed after a restart); RLS on PostgreSQL.

Revision ID: 0021_cep
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from vsm_mcp.db import rls_statements

revision = "0021_cep"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _tenant_cols() -> list[sa.Column]:
    return [
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "cep_rules",
        *_tenant_cols(),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("source", sa.String(4000), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("action", JSON, nullable=False),
        sa.Column("owner", JSON, nullable=False),
        sa.Column("description", sa.String(1000), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "name"),
    )
    op.create_table(
        "cep_timers",
        *_tenant_cols(),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("deadline", sa.Float(), nullable=False),
        sa.Column("state", JSON, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "rule", "key_hash"),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in ("cep_rules", "cep_timers"):
            for stmt in rls_statements(table):
                op.execute(stmt)


def downgrade() -> None:
    op.drop_table("cep_timers")
    op.drop_table("cep_rules")
