"""Foundation: tenants, api_keys, system_states, episodes, policies, artifacts; RLS on PostgreSQL.

Revision ID: 0001_foundation
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from vsm_mcp.db import rls_statements

revision = "0001_foundation"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TENANT_TABLES = ("api_keys", "system_states", "episodes", "policies", "artifacts")


def _tenant_cols() -> list[sa.Column]:
    return [
        sa.Column("tenant_id", sa.String(36), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    if pg:
        op.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vsm_app') THEN "
            "CREATE ROLE vsm_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE; END IF; END $$"
        )
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True, index=True),
        sa.Column("settings", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        *_tenant_cols(),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True, index=True),
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "system_states",
        sa.Column("id", sa.String(36), primary_key=True),
        *_tenant_cols(),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("health", sa.Float(), nullable=False),
        sa.Column("state", JSON, nullable=False),
        sa.UniqueConstraint("tenant_id", "system"),
    )
    op.create_table(
        "episodes",
        sa.Column("id", sa.String(36), primary_key=True),
        *_tenant_cols(),
        sa.Column("principal_id", sa.String(64), nullable=False),
        sa.Column("server", sa.String(128), nullable=False, index=True),
        sa.Column("tool", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("args_sha256", sa.String(64), nullable=False),
        sa.Column("error", sa.String(2000), nullable=False),
        sa.Column("trace_id", sa.String(64), nullable=False),
        sa.Column("data", JSON, nullable=False),
    )
    op.create_table(
        "policies",
        sa.Column("id", sa.String(36), primary_key=True),
        *_tenant_cols(),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("wasm", sa.LargeBinary(), nullable=True),
        sa.Column("meta", JSON, nullable=False),
        sa.UniqueConstraint("tenant_id", "name", "version"),
    )
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(36), primary_key=True),
        *_tenant_cols(),
        sa.Column("bucket", sa.String(128), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("meta", JSON, nullable=False),
        sa.UniqueConstraint("tenant_id", "bucket", "key"),
    )
    if pg:
        op.execute("GRANT USAGE ON SCHEMA public TO vsm_app")
        op.execute("GRANT SELECT ON tenants TO vsm_app")
        for table in TENANT_TABLES:
            for stmt in rls_statements(table):
                op.execute(stmt)
        # Key lookup happens before the tenant is known: a definer-rights function returns
        # exactly the one row matching the presented hash, nothing else of api_keys.
        op.execute(
            """
            CREATE OR REPLACE FUNCTION vsm_resolve_api_key(h text)
            RETURNS TABLE (id varchar, tenant_id varchar, scopes jsonb)
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
              SELECT id, tenant_id, scopes FROM api_keys WHERE key_hash = h AND revoked_at IS NULL
            $$
            """
        )
        op.execute("REVOKE ALL ON FUNCTION vsm_resolve_api_key(text) FROM PUBLIC")
        op.execute("GRANT EXECUTE ON FUNCTION vsm_resolve_api_key(text) TO vsm_app")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS vsm_resolve_api_key(text)")
    for table in ("artifacts", "policies", "episodes", "system_states", "api_keys", "tenants"):
        op.drop_table(table)
