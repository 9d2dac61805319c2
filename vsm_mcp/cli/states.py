"""``vsm-mcp states --tenant T`` — what the episode analyzer last saw, per upstream and tool
(``system_states``, vsm_mcp/workers/analyzer.py), with the alerts firing."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from vsm_mcp.cli.common import DbUrl, ensure_schema, handle_errors, out, run_async, settings_from


@handle_errors
def states(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
    database_url: DbUrl = None,
) -> None:
    """The analyzer's last window per upstream and tool: calls, success, p50/p95, errors, alerts."""
    from sqlmodel import col, select

    from vsm_mcp.db import Database
    from vsm_mcp.models import SystemState
    from vsm_mcp.tenants import get_tenant

    settings = settings_from(database_url)
    ensure_schema(settings)  # a fresh SQLite home is migrated; an empty PostgreSQL says to migrate

    async def go() -> list[dict[str, Any]]:
        db = Database(settings, settings.migration_database_url)
        try:
            tenant_id = (await get_tenant(db, tenant)).id
            async with db.tenant(tenant_id) as s:
                rows = (await s.execute(select(SystemState).order_by(col(SystemState.system)))).scalars()
                return [{"system": r.system, "health": r.health, **r.state} for r in rows]
        finally:
            await db.aclose()

    rows = run_async(go())
    if as_json:
        out.print_json(json.dumps(rows, default=str))
        return
    table = Table("system", "window end", "calls", "success", "p50 ms", "p95 ms", "errors", "alerts")
    for r in rows:
        table.add_row(
            r["system"], str(r.get("window", {}).get("end", ""))[:19], str(r.get("calls", "")),
            f"{r.get('success_rate', 1.0):.1%}", f"{r.get('p50_ms', 0):.1f}", f"{r.get('p95_ms', 0):.1f}",
            ", ".join(f"{k}={v}" for k, v in (r.get("errors") or {}).items()),
            ", ".join(sorted(r.get("alerts") or {})),
        )
    out.print(table)
