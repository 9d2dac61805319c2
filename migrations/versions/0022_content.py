"""Content server: content_containers and content_versions; RLS on PostgreSQL.

Revision ID: 0022_content
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from vsm_mcp.db import rls_statements

revision = "0022_content"
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
        "content_containers",
        sa.Column("id", sa.String(36), primary_key=True),
        *_tenant_cols(),
        sa.Column("source", sa.String(2048), nullable=False),
        sa.Column("source_kind", sa.String(16), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("content_type", sa.String(128), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.String(2000), nullable=False),
        sa.Column("current_sha", sa.String(64), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("indexed_sha", sa.String(64), nullable=False),
        sa.Column("etag", sa.String(256), nullable=False),
        sa.Column("last_modified", sa.String(64), nullable=False),
        sa.Column("lineage", JSON, nullable=False),
        sa.Column("meta", JSON, nullable=False),
        sa.Column("policy", JSON, nullable=False),
        sa.Column("capabilities", JSON, nullable=False),
        sa.UniqueConstraint("tenant_id", "source"),
    )
    op.create_table(
        "content_versions",
        sa.Column("id", sa.String(36), primary_key=True),
        *_tenant_cols(),
        sa.Column("container_id", sa.String(36), sa.ForeignKey("content_containers.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("raw_sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(128), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("blob_key", sa.String(1024), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("lineage", JSON, nullable=False),
        sa.UniqueConstraint("container_id", "sha256"),
        sa.UniqueConstraint("container_id", "number"),
    )
    op.create_index("ix_content_versions_container", "content_versions", ["container_id", "number"])
    if op.get_bind().dialect.name == "postgresql":
        for table in ("content_containers", "content_versions"):
            for stmt in rls_statements(table):
                op.execute(stmt)


def downgrade() -> None:
    op.drop_index("ix_content_versions_container", table_name="content_versions")
    op.drop_table("content_versions")
    op.drop_table("content_containers")
