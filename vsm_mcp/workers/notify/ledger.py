"""The delivery ledger (``notification_deliveries``): at most one send per idempotency key.

``claim`` moves a row to ``sending`` in its own committed transaction *before* the message
leaves, with a conditional UPDATE (so two processes racing for one key cannot both win). A row
found still ``sending`` longer than ``stale_after_s`` (well past the send timeout) means its
sender died mid-send: it may have arrived, so the row becomes ``uncertain`` and is not sent
again (an operator can resend it). A younger ``sending`` row is ``busy``: someone is sending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select, update

from vsm_mcp.db import Database
from vsm_mcp.models import new_id, utcnow
from vsm_mcp.workers.notify.tables import NotificationDelivery

FINAL = frozenset({"sent", "failed", "uncertain", "skipped"})
CLAIMABLE = ("pending", "retrying")
_D = NotificationDelivery


@dataclass(frozen=True)
class Claim:
    won: bool
    state: str  # "sending" when won; "busy" while another sender holds it; else the row's final state
    attempts: int
    wait_s: float = 0.0  # when busy: how long until the holder counts as dead


async def ensure(
    db: Database, tenant_id: str, key: str, channel_id: str, topic: str, event_id: str, message: dict[str, Any]
) -> None:
    """Create the ledger row of ``key`` as ``pending`` unless it exists (``message`` is kept
    so an operator can resend exactly what was meant)."""
    now = utcnow()
    insert = pg_insert if db.is_postgres else sqlite_insert
    stmt = insert(_D.__table__).on_conflict_do_nothing(index_elements=["tenant_id", "key"])  # type: ignore[attr-defined]
    row = {"id": new_id(), "tenant_id": tenant_id, "created_at": now, "updated_at": now, "key": key,
           "channel_id": channel_id, "topic": topic[:255], "event_id": event_id[:64], "state": "pending",
           "attempts": 0, "last_error": "", "remote_id": "", "message": message, "sent_at": None}
    async with db.tenant(tenant_id) as s:
        await s.execute(stmt, [row])


async def get(db: Database, tenant_id: str, key: str) -> NotificationDelivery | None:
    async with db.tenant(tenant_id) as s:
        return (await s.execute(select(_D).where(_D.key == key))).scalars().first()


def _age_s(row: NotificationDelivery) -> float:
    at = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)  # SQLite: naive UTC
    return (utcnow() - at).total_seconds()


async def claim(db: Database, tenant_id: str, key: str, stale_after_s: float) -> Claim:
    """Win the right to send ``key`` once more, or learn why not."""
    async with db.tenant(tenant_id) as s:
        won = await s.execute(
            update(_D).where(col(_D.key) == key, col(_D.state).in_(CLAIMABLE))
            .values(state="sending", attempts=_D.attempts + 1, updated_at=utcnow())
        )
        if getattr(won, "rowcount", 0) == 1:
            attempts = (await s.execute(select(_D.attempts).where(_D.key == key))).scalar_one()
            return Claim(True, "sending", int(attempts))
    async with db.tenant(tenant_id) as s:
        row = (await s.execute(select(_D).where(_D.key == key))).scalars().first()
        if row is None:
            return Claim(False, "missing", 0)
        if row.state != "sending":
            return Claim(False, row.state, row.attempts)
        age = _age_s(row)
        if age < stale_after_s:
            return Claim(False, "busy", row.attempts, stale_after_s - age)
        await s.execute(
            update(_D).where(col(_D.key) == key, col(_D.state) == "sending", col(_D.attempts) == row.attempts)
            .values(state="uncertain", updated_at=utcnow(),
                    last_error="the sender stopped while sending; it may have arrived, so it is not sent again")
        )
    return Claim(False, "uncertain", row.attempts)


async def record(db: Database, tenant_id: str, key: str, state: str, *, error: str = "", remote_id: str = "") -> None:
    """Write the outcome of the attempt that holds the claim (never un-sends a sent row)."""
    values: dict[str, Any] = {"state": state, "updated_at": utcnow(), "last_error": error[:2000],
                              "remote_id": remote_id[:255]}
    if state == "sent":
        values["sent_at"] = utcnow()
    async with db.tenant(tenant_id) as s:
        await s.execute(update(_D).where(col(_D.key) == key, col(_D.state) != "sent").values(**values))
