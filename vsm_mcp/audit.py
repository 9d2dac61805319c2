"""Reading the audit trail (``episodes``): one query for ``vsm-mcp audit`` and ``GET /v1/audit``.

Newest first, filtered by tool, server, outcome, trace id and time, paginated by an opaque
cursor (keyset on ``created_at, id``: a page never repeats or skips a row while calls are being
recorded, unlike an offset). Always inside one tenant's session, so a caller sees only its own
tenant's episodes (RLS on PostgreSQL, the ORM criterion on SQLite).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select

from vsm_mcp.db import Database
from vsm_mcp.errors import InvalidArguments
from vsm_mcp.models import Episode

EPISODES = Episode.__table__  # type: ignore[attr-defined]
MAX_LIMIT = 1000
_RELATIVE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass
class AuditQuery:
    tenant: str
    tool: str | None = None  # a tool name or a public name (<server>__<tool>)
    server: str | None = None
    outcome: str | None = None
    trace_id: str | None = None
    since: datetime | None = None
    limit: int = 100
    cursor: str | None = None


@dataclass
class AuditPage:
    episodes: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None


def parse_since(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """``15m`` / ``2h`` / ``7d`` (ago) or an ISO-8601 time; InvalidArguments names the value."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    m = _RELATIVE.match(value)
    if m:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArguments(f"since {value!r} is neither a duration (15m, 2h, 7d) nor an ISO-8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArguments(f"limit must be 1..{MAX_LIMIT} (got {limit})")
    return limit


def _encode_cursor(created: datetime, ident: str) -> str:
    return base64.urlsafe_b64encode(f"{created.isoformat()}|{ident}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, ident = raw.split("|", 1)
        return datetime.fromisoformat(created), ident
    except (ValueError, UnicodeDecodeError):
        raise InvalidArguments("cursor is not one this endpoint gave out") from None


def _utc(when: datetime) -> datetime:
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)




def _row(r: Any) -> dict[str, Any]:
    data = r.data if isinstance(r.data, dict) else {}
    created = _utc(r.created_at)
    return {
        "id": r.id,
        "time": created.isoformat(),
        "principal": r.principal_id,
        "server": r.server,
        "tool": r.tool,
        "public_name": data.get("public_name") or f"{r.server}__{r.tool}",
        "outcome": r.outcome,
        "duration_ms": r.duration_ms,
        "error": r.error,
        "trace_id": r.trace_id,
        "source": data.get("source", ""),
        "cached": bool(data.get("cached", False)),
        "args_sha256": r.args_sha256,
    }


async def read_episodes(db: Database, q: AuditQuery) -> AuditPage:
    """One page of ``q.tenant``'s episodes, newest first; ``next_cursor`` is None on the last."""
    limit = check_limit(q.limit)
    c = EPISODES.c
    conds: list[Any] = [c.tenant_id == q.tenant]  # Core selects get no ORM tenant criterion: say it
    if q.tool:
        conds.append(or_(c.tool == q.tool, (c.server + "__" + c.tool) == q.tool))
    if q.server:
        conds.append(c.server == q.server)
    if q.outcome:
        conds.append(c.outcome == q.outcome)
    if q.trace_id:
        conds.append(c.trace_id == q.trace_id.lower())
    if q.since is not None:
        conds.append(c.created_at >= _utc(q.since))
    if q.cursor:
        created, ident = _decode_cursor(q.cursor)
        created = _utc(created)
        conds.append(or_(c.created_at < created, and_(c.created_at == created, c.id < ident)))
    stmt = select(EPISODES).where(*conds).order_by(c.created_at.desc(), c.id.desc()).limit(limit + 1)
    async with db.tenant(q.tenant) as s:
        rows = list((await s.execute(stmt)).all())
    page = AuditPage([_row(r) for r in rows[:limit]])
    if len(rows) > limit:
        last = rows[limit - 1]
        page.next_cursor = _encode_cursor(_utc(last.created_at), last.id)
    return page
