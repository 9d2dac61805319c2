"""Search server: search_collections and search_chunks; RLS on PostgreSQL.

Revision ID: 0005_search
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from vsm_mcp.db import rls_statements

revision = "0005_search"
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
        "search_collections",
        sa.Column("id", sa.String(36), primary_key=True),
        *_tenant_cols(),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(8), nullable=False),
        sa.Column("backend", sa.String(16), nullable=False),
        sa.Column("embedder", sa.String(128), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("next_vid", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.create_table(
        "search_chunks",
        sa.Column("id", sa.String(36), primary_key=True),
        *_tenant_cols(),
        sa.Column("collection_id", sa.String(36), sa.ForeignKey("search_collections.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("doc_id", sa.String(512), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("vid", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("meta", JSON, nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint("collection_id", "doc_id", "chunk"),
        sa.UniqueConstraint("collection_id", "vid"),
    )
    op.create_index("ix_search_chunks_doc", "search_chunks", ["collection_id", "doc_id"])
    if op.get_bind().dialect.name == "postgresql":
        for table in ("search_collections", "search_chunks"):
            for stmt in rls_statements(table):
                op.execute(stmt)


def downgrade() -> None:
    op.drop_index("ix_search_chunks_doc", table_name="search_chunks")
    op.drop_table("search_chunks")
    op.drop_table("search_collections")
