"""Upstream registry (issue 27): run-time managed upstreams, tool overrides, write-only secrets.

Router configuration read whole by every replica, so no row-level security (see
router/upstreams/store.py); on PostgreSQL a sequence numbers every write.

Revision ID: 0027_upstream_registry
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0027_upstream_registry"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upstream_registry",
        sa.Column("owner", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("body", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("owner", "kind", "name"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE upstream_registry_revision")
        op.execute("GRANT SELECT, INSERT, UPDATE ON upstream_registry TO vsm_app")
        op.execute("GRANT USAGE, SELECT ON SEQUENCE upstream_registry_revision TO vsm_app")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE IF EXISTS upstream_registry_revision")
    op.drop_table("upstream_registry")
