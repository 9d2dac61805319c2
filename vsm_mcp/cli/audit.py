"""`vsm-mcp audit` — read the audit trail (episodes) from the command line.

The same query as ``GET /v1/audit`` (vsm_mcp/audit.py). Before reading, episodes a crashed
router left in its journal (``<home>/journal``) are replayed into the database, so what the
operator sees includes every call a client saw answered.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vsm_mcp.cli.common import DbUrl, handle_errors, out, run_async, settings_from


def _table(episodes: list[dict[str, object]]) -> str:
    lines = []
    for e in episodes:
        err = f"  {str(e['error'])[:80]}" if e.get("error") else ""
        lines.append(
            f"{e['time']}  {e['outcome']:<12} {e['public_name']:<40} {float(e['duration_ms']):>9.1f} ms"  # type: ignore[arg-type]
            f"  {e['source']:<8} trace={e['trace_id']}{err}"
        )
    return "\n".join(lines)


@handle_errors
def audit(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name (default: VSM_DEFAULT_TENANT).")] = "",
    tool: Annotated[str, typer.Option("--tool", help="A tool name or public name (<server>__<tool>).")] = "",
    server: Annotated[str, typer.Option("--server", help="Only this upstream's calls.")] = "",
    outcome: Annotated[str, typer.Option("--outcome", help="ok, tool_error or an error label (rate_limited, …).")] = "",
    trace_id: Annotated[str, typer.Option("--trace-id", help="Only the call(s) of this W3C trace id.")] = "",
    since: Annotated[str, typer.Option("--since", help="15m, 2h, 7d or an ISO-8601 time.")] = "",
    limit: Annotated[int, typer.Option("--limit", help="Most episodes to show (1..1000).")] = 50,
    cursor: Annotated[str, typer.Option("--cursor", help="Continue after a previous page (its next_cursor).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: episodes and next_cursor.")] = False,
    database_url: DbUrl = None,
) -> None:
    """Show recorded tool calls, newest first."""
    from vsm_mcp.audit import AuditQuery, parse_since, read_episodes
    from vsm_mcp.cli.common import ensure_schema
    from vsm_mcp.db import Database
    from vsm_mcp.errors import NotFound
    from vsm_mcp.journal import journal_dir, replay_orphans
    from vsm_mcp.tenants import get_tenant

    settings = settings_from(database_url)
    ensure_schema(settings)
    query = AuditQuery(
        tenant="", tool=tool or None, server=server or None, outcome=outcome or None,
        trace_id=trace_id or None, since=parse_since(since), limit=limit, cursor=cursor or None,
    )

    async def go() -> tuple[int, dict[str, object]]:
        db = Database(settings)
        try:
            recovered = await replay_orphans(db, journal_dir(settings.home))
            try:
                query.tenant = (await get_tenant(db, tenant or settings.default_tenant)).id
            except NotFound:
                if tenant:
                    raise
                return recovered, {"episodes": [], "next_cursor": None}  # no anonymous call yet
            page = await read_episodes(db, query)
            return recovered, {"episodes": page.episodes, "next_cursor": page.next_cursor}
        finally:
            await db.aclose()

    recovered, page = run_async(go())
    if as_json:
        out.print_json(json.dumps(page))
        return
    if recovered:
        out.print(f"({recovered} episode(s) recovered from a crashed router's journal)")
    episodes = page["episodes"]
    assert isinstance(episodes, list)
    out.print(_table(episodes) if episodes else "no episodes match", soft_wrap=True, markup=False)
    if page["next_cursor"]:
        out.print(f"more: --cursor {page['next_cursor']}", markup=False)
