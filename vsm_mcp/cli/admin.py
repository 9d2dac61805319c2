"""``vsm-mcp migrate``, ``vsm-mcp tenants …`` and ``vsm-mcp keys …``: the database and its principals."""

from __future__ import annotations

from typing import Annotated

import typer

from vsm_mcp.cli.common import (
    DbUrl,
    check_reachable,
    ensure_schema,
    err,
    handle_errors,
    out,
    redact,
    run_async,
    settings_from,
)
from vsm_mcp.config import Settings

tenants_app = typer.Typer(help="Create, list, disable, enable and delete tenants (isolated spaces of data and keys).",
                          no_args_is_help=True)
keys_app = typer.Typer(help="API keys of a tenant: create (shown once, stored hashed), list, revoke, rotate.",
                       no_args_is_help=True)



@handle_errors
def migrate(
    database_url: DbUrl = None,
    downgrade: Annotated[
        str | None, typer.Option("--downgrade", help="Downgrade to this revision instead ('base' = empty).")
    ] = None,
) -> None:
    """Create or upgrade the database schema (Alembic). Safe to run repeatedly.

    On PostgreSQL run it as the table owner (VSM_MIGRATION_DATABASE_URL); it creates the
    non-owner role vsm_app the application should connect as, with row-level security on.
    """
    from vsm_mcp import migrate as m

    settings = settings_from(database_url)
    url = settings.migration_database_url
    check_reachable(settings, url)
    if downgrade:
        m.downgrade(url, downgrade)
        out.print(f"downgraded {redact(url)} to {downgrade}")
    else:
        m.upgrade(url)
        out.print(f"database {redact(url)} is at the latest schema")
        run_async(_ensure_default_tenant(settings))


async def _ensure_default_tenant(settings: Settings) -> None:
    """Anonymous callers and `serve` need the default tenant; on PostgreSQL the app role
    (vsm_app) may not insert tenants, so the owner-run migration creates it."""
    from vsm_mcp.db import Database
    from vsm_mcp.tenants import ensure_tenant

    db = Database(settings, settings.migration_database_url)
    try:
        await ensure_tenant(db, settings.default_tenant)
    finally:
        await db.aclose()


@tenants_app.command("create")
@handle_errors
def tenants_create(
    name: Annotated[str, typer.Argument(help="Tenant name: lowercase letters, digits, '.', '_', '-'.")],
    database_url: DbUrl = None,
) -> None:
    """Create a tenant."""
    from vsm_mcp.db import Database
    from vsm_mcp.tenants import create_tenant

    settings = settings_from(database_url)

    async def go() -> str:
        db = Database(settings, settings.migration_database_url)
        try:
            return (await create_tenant(db, name)).id
        finally:
            await db.aclose()

    ensure_schema(settings)
    tenant_id = run_async(go())
    out.print(f"created tenant {name} ({tenant_id})")


@keys_app.command("create")
@handle_errors
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the key belongs to.")],
    scopes: Annotated[
        str,
        typer.Option(
            "--scopes",
            help="Comma-separated scopes, e.g. 'tools:call,storage:*'. Known: *, admin, <family>, "
            "<family>:read|write|call|admin|* (families: tools, events, storage, llm, search, policy, beliefs …).",
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="A label for listings.")] = "",
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Lifetime, e.g. 90d, 12h, 30m; none = until revoked.")
    ] = None,
    database_url: DbUrl = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from vsm_mcp.auth import validate_scopes
    from vsm_mcp.db import Database
    from vsm_mcp.keys import KeyInfo, create_key, parse_duration

    scope_list = validate_scopes(scopes.split(","))
    ttl = parse_duration(expires_in) if expires_in else None
    settings = settings_from(database_url)
    ensure_schema(settings)

    async def go() -> tuple[str, KeyInfo]:
        db = Database(settings, settings.migration_database_url)
        try:
            return await create_key(db, tenant, scope_list, name=name, expires_in=ttl)
        finally:
            await db.aclose()

    key, info = run_async(go())
    until = f", expires {info.as_dict()['expires_at']}" if info.expires_at else ""
    err.print(f"API key {info.id} for tenant {tenant} with scopes {','.join(scope_list)}{until} "
              "(shown once, store it now):")
    out.print(key, soft_wrap=True)
