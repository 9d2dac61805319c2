"""``GET /v1/audit`` — the caller's tenant's episodes, newest first, one page at a time.

Query parameters (all optional): ``tool`` (a tool or public name), ``server``, ``outcome`` (``ok``,
``tool_error`` or an error label), ``trace_id``, ``since`` (``15m``, ``2h``, ``7d`` or ISO-8601),
``limit`` (1..1000, default 100) and ``cursor`` (the previous page's ``next_cursor``). The
answer is ``{"episodes": [...], "next_cursor": "..." | null}``; the query itself is
vsm_mcp/audit.py, shared with ``vsm-mcp audit``. Tenant-scoped: a caller never sees another
tenant's calls, whatever it asks for. Needs scope ``audit:read`` (``audit``, ``admin``, ``*``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from router.edge._auth import error_response
from router.gate.route import principal
from vsm_mcp.audit import AuditQuery, parse_since, read_episodes
from vsm_mcp.auth import Principal
from vsm_mcp.db import Database
from vsm_mcp.errors import InvalidArguments, VsmError

PrincipalOf = Callable[[Request], Awaitable[Principal]]
SCOPE = "audit:read"


def _int(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise InvalidArguments(f"query parameter {name!r} must be a whole number (got {raw!r})")
    return int(raw)


def audit_endpoint(db: Database, principal_of: PrincipalOf = principal) -> Callable[[Request], Awaitable[Response]]:
    """The handler; ``principal_of`` gives the caller the gate established (the route is declared
    with capability ``audit:read``, so the gate has checked the scope)."""

    async def audit(request: Request) -> Response:
        try:
            caller = await principal_of(request)
            p = request.query_params
            page = await read_episodes(db, AuditQuery(
                tenant=caller.tenant_id, tool=p.get("tool") or None, server=p.get("server") or None,
                outcome=p.get("outcome") or None, trace_id=p.get("trace_id") or None,
                since=parse_since(p.get("since")), limit=_int(p.get("limit"), "limit", 100),
                cursor=p.get("cursor") or None,
            ))
            return JSONResponse({"episodes": page.episodes, "next_cursor": page.next_cursor})
        except VsmError as exc:
            return error_response(exc)

    return audit
