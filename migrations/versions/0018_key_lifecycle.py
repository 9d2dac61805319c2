"""Key and tenant lifecycle (issue 18): key expiry and last use, disabled tenants, and a key
lookup that refuses revoked, expired and disabled-tenant keys in one place.

Revision ID: 0018_key_lifecycle
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_key_lifecycle"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

_OLD_FUNCTION = """
CREATE OR REPLACE FUNCTION vsm_resolve_api_key(h text)
RETURNS TABLE (id varchar, tenant_id varchar, scopes jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT id, tenant_id, scopes FROM api_keys WHERE key_hash = h AND revoked_at IS NULL
$$
"""


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("tenants", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name != "postgresql":
        return
    # The lookup runs before the tenant is known, so it stays a definer-rights function that
    # returns only the matching live key (now with its expiry and tenant name, which the
    # authenticator's cache needs), and a second one that lists keys revoked since a time —
    # what each replica polls as the backstop of the bus invalidation.
    op.execute("DROP FUNCTION IF EXISTS vsm_resolve_api_key(text)")
    op.execute(
        """
        CREATE FUNCTION vsm_resolve_api_key(h text)
        RETURNS TABLE (id varchar, tenant_id varchar, scopes jsonb, expires_at timestamptz, tenant_name varchar)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
          SELECT k.id, k.tenant_id, k.scopes, k.expires_at, t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
          WHERE k.key_hash = h AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
            AND t.disabled_at IS NULL
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION vsm_keys_changed_since(since timestamptz)
        RETURNS TABLE (id varchar, tenant_id varchar)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
          SELECT id, tenant_id FROM api_keys WHERE revoked_at > since OR updated_at > since
        $$
        """
    )
    for fn in ("vsm_resolve_api_key(text)", "vsm_keys_changed_since(timestamptz)"):
        op.execute(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO vsm_app")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS vsm_keys_changed_since(timestamptz)")
        op.execute("DROP FUNCTION IF EXISTS vsm_resolve_api_key(text)")
        op.execute(_OLD_FUNCTION)
        op.execute("REVOKE ALL ON FUNCTION vsm_resolve_api_key(text) FROM PUBLIC")
        op.execute("GRANT EXECUTE ON FUNCTION vsm_resolve_api_key(text) TO vsm_app")
    with op.batch_alter_table("tenants") as t:  # batch: SQLite rebuilds the table to drop a column
        t.drop_column("disabled_at")
    with op.batch_alter_table("api_keys") as k:
        k.drop_column("last_used_at")
        k.drop_column("expires_at")
