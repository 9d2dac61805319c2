"""``vsm-mcp keys list|revoke|rotate`` and ``vsm-mcp tenants list|disable|enable|delete``: the
lifecycle of keys and tenants (vsm_mcp/keys.py, vsm_mcp/tenant_lifecycle.py do the work).

They run as the administrator (the migration URL) and announce every change on the bus
(``VSM_BUS_URL``), so running replicas drop a revoked key at once; replicas also poll the
database every second, which covers an in-memory bus.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from vsm_mcp.bus import Bus, make_bus
from vsm_mcp.cli.common import DbUrl, ensure_schema, err, handle_errors, out, run_async, settings_from
from vsm_mcp.db import Database
from vsm_mcp.errors import InvalidArguments

T = TypeVar("T")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TenantArg = Annotated[str, typer.Argument(help="Tenant name.")]


@asynccontextmanager
async def _admin(database_url: str | None) -> AsyncIterator[tuple[Database, Bus]]:
    settings = settings_from(database_url)
    db = Database(settings, settings.migration_database_url)
    bus = make_bus(settings.bus_url)
    try:
        await bus.start()
        yield db, bus
    finally:
        await bus.aclose()
        await db.aclose()


def _run(database_url: str | None, fn: Callable[[Database, Bus], Awaitable[T]]) -> T:
    settings = settings_from(database_url)
    ensure_schema(settings)

    async def go() -> T:
        async with _admin(database_url) as (db, bus):
            return await fn(db, bus)

    return run_async(go())


def _when(value: str | None) -> str:
    return "" if not value else datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")


def _print_rows(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(rows)) if rows else out.print("[]")
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*[
            ",".join(v) if isinstance(v, list) else _when(v) if c.endswith("_at") else str(v if v is not None else "")
            for c in columns for v in [row.get(c)]
        ])
    Console(highlight=False, width=max(out.width, 220)).print(table)  # ids and dates whole, also when piped


@handle_errors
def keys_list(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant whose keys to list.")],
    as_json: JsonOpt = False, database_url: DbUrl = None,
) -> None:
    """List a tenant's API keys: id, prefix, scopes, state, created, last used, expires, revoked."""
    from vsm_mcp import keys

    rows = [k.as_dict() for k in _run(database_url, lambda db, _bus: keys.list_keys(db, tenant))]
    _print_rows(rows, ["id", "name", "prefix", "scopes", "state", "created_at", "last_used_at", "expires_at",
                       "revoked_at"], as_json)


@handle_errors
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see: vsm-mcp keys list --tenant NAME).")],
    database_url: DbUrl = None,
) -> None:
    """Revoke a key at once: every replica refuses it within a second."""
    from vsm_mcp import keys

    info = _run(database_url, lambda db, bus: keys.revoke_key(db, key_id, bus=bus))
    err.print(f"revoked key {info.id} ({info.prefix}…) of tenant {info.tenant}")


@handle_errors
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    grace: Annotated[str, typer.Option("--grace", help="How long the old secret keeps working, e.g. 1h, 7d.")] = "1h",
    database_url: DbUrl = None,
) -> None:
    """Give a key a new secret (same name and scopes); print it once. The old one lives for --grace."""
    from vsm_mcp import keys

    span = keys.parse_duration(grace)
    secret, new, old = _run(database_url, lambda db, bus: keys.rotate_key(db, key_id, grace=span, bus=bus))
    err.print(f"new key {new.id} for tenant {new.tenant} (shown once, store it now); "
              f"the old key {old.id} works until {_when(old.as_dict()['expires_at'])} UTC:")
    out.print(secret, soft_wrap=True)


@handle_errors
def tenants_list(as_json: JsonOpt = False, database_url: DbUrl = None) -> None:
    """List tenants with their state and number of live keys."""
    from vsm_mcp.tenant_lifecycle import tenant_rows

    rows = _run(database_url, lambda db, _bus: tenant_rows(db))
    _print_rows(rows, ["name", "id", "state", "keys", "created_at"], as_json)


def _set_disabled(database_url: str | None, name: str, disabled: bool) -> None:
    from vsm_mcp.tenant_lifecycle import set_disabled

    _run(database_url, lambda db, bus: set_disabled(db, name, disabled, bus))


@handle_errors
def tenants_disable(name: TenantArg, database_url: DbUrl = None) -> None:
    """Refuse every key of a tenant (data kept; undo with `tenants enable`)."""
    _set_disabled(database_url, name, True)
    err.print(f"tenant {name} is disabled: its keys are refused on every replica")


@handle_errors
def tenants_enable(name: TenantArg, database_url: DbUrl = None) -> None:
    """Accept a disabled tenant's keys again."""
    _set_disabled(database_url, name, False)
    err.print(f"tenant {name} is enabled")


@handle_errors
def tenants_delete(
    name: TenantArg,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: delete every row and object of the tenant.")] = False,
    database_url: DbUrl = None,
) -> None:
    """Delete a tenant with all its rows (keys, episodes, policies, …) and stored objects. Irreversible."""
    from vsm_mcp.tenant_lifecycle import delete_tenant

    if not yes:
        raise InvalidArguments(f"deleting tenant {name!r} removes all its data; run again with --yes to confirm")
    settings = settings_from(database_url)
    gone = _run(database_url, lambda db, bus: delete_tenant(db, settings, name, bus))
    rows = sum(gone["rows"].values())
    err.print(f"deleted tenant {name}: {rows} rows in {len(gone['rows'])} tables, {gone['objects']} stored objects")
