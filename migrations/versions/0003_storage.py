"""Storage: buckets (backend, quota, lifecycle) and noncurrent object versions; RLS on PostgreSQL.

Revision ID: 0003_storage
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

from vsm_mcp.db import rls_statements

revision = "0003_storage"
down_revision = "0001_foundation"
branch_labels = ("storage",)
depends_on = None

TABLES = ("storage_buckets", "storage_versions")


def _tenant_cols() -> list[sa.Column]:
    return [
        sa.Column("tenant_id", sa.String(36), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "storage_buckets",
        sa.Column("id", sa.String(36), primary_key=True),
        *_tenant_cols(),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("backend", sa.String(64), nullable=False),
        sa.Column("quota_bytes", sa.BigInteger(), nullable=True),
        sa.Column("quota_objects", sa.BigInteger(), nullable=True),
        sa.Column("expire_days", sa.Float(), nullable=True),
        sa.Column("versioning", sa.Boolean(), nullable=False),
        sa.Column("keep_versions", sa.Integer(), nullable=True),
        sa.Column("last_swept_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.create_table(
        "storage_versions",
        sa.Column("id", sa.String(36), primary_key=True),
        *_tenant_cols(),
        sa.Column("bucket", sa.String(64), nullable=False, index=True),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
    )
    op.create_index("ix_storage_versions_key", "storage_versions", ["tenant_id", "bucket", "key"])
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            for stmt in rls_statements(table):
                op.execute(stmt)


def downgrade() -> None:
    op.drop_index("ix_storage_versions_key", table_name="storage_versions")
    op.drop_table("storage_versions")
    op.drop_table("storage_buckets")
