"""Tenant lifecycle: list with state, disable, enable, delete (the CLI's ``vsm-mcp tenants``).

* **disable** stops every key of the tenant (and anonymous callers, for the default tenant) on
  every replica — at once over the bus (``tenant.changed``), else at the authenticators' next
  poll — while keeping all data; **enable** undoes it.
* **delete** purges the tenant: every row whose table has a ``tenant_id`` column (found in the
  database itself, so tables added by later migrations are covered), every stored object under the
  tenant's prefix in each storage backend, then the tenant row. It is not reversible; the CLI asks
  for ``--yes``.

These run as the administrator (the migration URL on PostgreSQL: the app role may not write
``tenants``); row deletes go through tenant sessions, so row-level security still applies.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, text, update
from sqlmodel import select

from vsm_mcp.bus import Bus
from vsm_mcp.bus.events import Event
from vsm_mcp.config import Settings
from vsm_mcp.db import Database
from vsm_mcp.models import ApiKey, Tenant
from vsm_mcp.tenants import get_tenant

log = logging.getLogger(__name__)
CHANGED_TOPIC = "tenant.changed"


async def tenant_rows(db: Database) -> list[dict[str, Any]]:
    """Every tenant: name, id, state (active | disabled), created, and its count of live keys."""
    async with db.system() as s:
        tenants = list((await s.execute(select(Tenant).order_by(Tenant.name))).scalars())
    out = []
    for t in tenants:
        async with db.tenant(t.id) as s:
            live = (await s.execute(
                select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))  # type: ignore[union-attr]
            )).scalar_one()
        out.append({
            "name": t.name, "id": t.id, "state": "disabled" if t.disabled_at else "active",
            "created_at": t.created_at.isoformat(), "keys": int(live),
        })
    return out


async def set_disabled(db: Database, name: str, disabled: bool, bus: Bus | None = None) -> Tenant:
    tenant = await get_tenant(db, name)
    when = datetime.now(UTC) if disabled else None
    async with db.system() as s:
        await s.execute(update(Tenant).where(Tenant.id == tenant.id).values(disabled_at=when))  # type: ignore[arg-type]
    tenant.disabled_at = when
    await _announce(bus, tenant.id, "disabled" if disabled else "enabled")
    return tenant


async def tenant_tables(db: Database) -> list[str]:
    """Tables with a ``tenant_id`` column, read from the database's own catalog."""
    async with db.system() as s:
        if db.is_postgres:
            rows = await s.execute(text(
                "SELECT table_name FROM information_schema.columns WHERE column_name = 'tenant_id' "
                "AND table_schema = current_schema() ORDER BY table_name"
            ))
            return [r[0] for r in rows]
        names = [r[0] for r in await s.execute(text("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"))]
        out = []
        for name in names:
            cols = await s.execute(text(f'PRAGMA table_info("{name}")'))
            if any(c[1] == "tenant_id" for c in cols):
                out.append(name)
        return out


async def delete_tenant(db: Database, settings: Settings, name: str, bus: Bus | None = None) -> dict[str, Any]:
    """Purge ``name``: rows, stored objects, the tenant. Returns what was removed."""
    from vsm_mcp.storage.service import StorageService

    tenant = await get_tenant(db, name)
    await set_disabled(db, name, True, bus)  # nothing new arrives while we delete
    removed: dict[str, int] = {}
    svc = StorageService(settings, db)
    objects = 0
    try:
        for backend in sorted(svc.backend_names):
            store = svc.backend(backend)
            after = ""
            while True:
                page = await store.list(f"{tenant.id}/", after=after, limit=1000)
                for info in page.items:
                    objects += bool(await store.delete(info.key))
                if page.next_after is None:
                    break
                after = page.next_after
    finally:
        await svc.aclose()
    for table in await tenant_tables(db):
        async with db.tenant(tenant.id) as s:
            res = await s.execute(text(f'DELETE FROM "{table}" WHERE tenant_id = :t'), {"t": tenant.id})
            removed[table] = int(getattr(res, "rowcount", 0) or 0)
    async with db.system() as s:
        await s.execute(text("DELETE FROM tenants WHERE id = :t"), {"t": tenant.id})
    await _announce(bus, tenant.id, "deleted")
    return {"tenant": name, "id": tenant.id, "rows": {k: v for k, v in removed.items() if v}, "objects": objects}


async def _announce(bus: Bus | None, tenant_id: str, change: str) -> None:
    if bus is None:
        return
    try:
        await bus.publish(Event(topic=CHANGED_TOPIC, tenant=tenant_id, type=change, data={"change": change}))
    except Exception:  # replicas also poll for disabled tenants
        log.warning("could not announce tenant %s %s on the bus; replicas see it at their next poll", tenant_id, change)
