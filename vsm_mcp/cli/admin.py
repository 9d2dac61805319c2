"""``vsm-mcp migrate``, ``vsm-mcp tenants …`` and ``vsm-mcp keys …``: the database and its principals."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

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

tenants_app = typer.Typer(help="Create and list tenants (isolated spaces of data and keys).", no_args_is_help=True)
keys_app = typer.Typer(help="Create API keys for a tenant (shown once, stored hashed).", no_args_is_help=True)



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


@tenants_app.command("list")
@handle_errors
def tenants_list(database_url: DbUrl = None) -> None:
    """List tenants."""
    from vsm_mcp.db import Database
    from vsm_mcp.tenants import list_tenants

    settings = settings_from(database_url)
    ensure_schema(settings)

    async def go() -> list[tuple[str, str]]:
        db = Database(settings, settings.migration_database_url)
        try:
            return [(t.name, t.id) for t in await list_tenants(db)]
        finally:
            await db.aclose()

    table = Table("name", "id")
    for row in run_async(go()):
        table.add_row(*row)
    out.print(table)


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
    database_url: DbUrl = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from vsm_mcp.auth import validate_scopes
    from vsm_mcp.db import Database
    from vsm_mcp.tenants import create_api_key

    scope_list = validate_scopes(scopes.split(","))
    settings = settings_from(database_url)
    ensure_schema(settings)

    async def go() -> str:
        db = Database(settings, settings.migration_database_url)
        try:
            key, _row = await create_api_key(db, tenant, scope_list, name)
            return key
        finally:
            await db.aclose()

    key = run_async(go())
    err.print(f"API key for tenant {tenant} with scopes {','.join(scope_list)} (shown once, store it now):")
    out.print(key, soft_wrap=True)
