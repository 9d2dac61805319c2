"""LLM-CDN: llm_cache (answers) and llm_inflight (cross-replica single-flight); RLS on PostgreSQL.

Revision ID: 0004_llm_cache
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

from vsm_mcp.db import rls_statements

revision = "0004_llm_cache"
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
        "llm_cache",
        *_tenant_cols(),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "key"),
    )
    op.create_index("ix_llm_cache_tenant_created", "llm_cache", ["tenant_id", "created_at"])
    op.create_index("ix_llm_cache_model", "llm_cache", ["model"])
    op.create_table(
        "llm_inflight",
        *_tenant_cols(),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "key"),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in ("llm_cache", "llm_inflight"):
            for stmt in rls_statements(table):
                op.execute(stmt)


def downgrade() -> None:
    op.drop_table("llm_inflight")
    op.drop_index("ix_llm_cache_model", table_name="llm_cache")
    op.drop_index("ix_llm_cache_tenant_created", table_name="llm_cache")
    op.drop_table("llm_cache")
