"""Versioned policies per tenant in the ``policies`` table (0001_foundation).

Each ``put`` adds version N+1 of a name and makes it the only active version of that name;
the previous versions stay for audit and ``get(version=…)``. Every change publishes
``policy.changed`` on the bus so every router replica reloads the tenant's policies.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select, update

from vsm_mcp.bus import Bus
from vsm_mcp.bus.events import Event
from vsm_mcp.db import Database
from vsm_mcp.errors import Conflict, NotFound
from vsm_mcp.models import Policy, utcnow

CHANGED_TOPIC = "policy.changed"


class PolicyStore:
    """CRUD over ``policies`` for one process; all methods are tenant-scoped."""

    def __init__(self, db: Database, bus: Bus | None = None) -> None:
        self.db = db
        self.bus = bus

    async def put(
        self, tenant_id: str, name: str, *, source: str, wasm: bytes, meta: dict[str, Any], active: bool = True
    ) -> Policy:
        """Store a new version of ``name``; when ``active``, it replaces the active one."""
        try:
            async with self.db.tenant(tenant_id) as s:
                latest = (
                    await s.execute(select(func.max(Policy.version)).where(Policy.name == name))
                ).scalar_one_or_none()
                if active:
                    await s.execute(
                        update(Policy).where(col(Policy.name) == name).values(active=False, updated_at=utcnow())
                    )
                row = Policy(
                    tenant_id=tenant_id, name=name, version=(latest or 0) + 1, active=active,
                    source=source, wasm=wasm, meta=meta,
                )
                s.add(row)
        except IntegrityError:
            raise Conflict(f"policy {name!r} was changed concurrently; retry") from None
        await self._changed(tenant_id, name, row.version)
        return row

    async def get(self, tenant_id: str, name: str, version: int | None = None) -> Policy:
        """A version of ``name`` (default: the active one, else the latest)."""
        async with self.db.tenant(tenant_id) as s:
            q = select(Policy).where(Policy.name == name)
            if version is not None:
                q = q.where(Policy.version == version)
            rows = list((await s.execute(q.order_by(col(Policy.active).desc(), col(Policy.version).desc()))).scalars())
        if not rows:
            which = f" version {version}" if version is not None else ""
            raise NotFound(f"no policy {name!r}{which} for this tenant")
        return rows[0]

    async def versions(self, tenant_id: str) -> list[Policy]:
        """Every version of every policy of the tenant, by name then newest first."""
        async with self.db.tenant(tenant_id) as s:
            q = select(Policy).order_by(col(Policy.name), col(Policy.version).desc())
            return list((await s.execute(q)).scalars())

    async def active(self, tenant_id: str) -> list[Policy]:
        """The active version of each policy, ordered by name (the evaluation order)."""
        async with self.db.tenant(tenant_id) as s:
            q = select(Policy).where(col(Policy.active).is_(True)).order_by(col(Policy.name))
            return list((await s.execute(q)).scalars())

    async def delete(self, tenant_id: str, name: str) -> int:
        """Delete every version of ``name``; NotFound when there is none."""
        async with self.db.tenant(tenant_id) as s:
            result = await s.execute(delete(Policy).where(col(Policy.name) == name))
            count = int(getattr(result, "rowcount", 0) or 0)
        if not count:
            raise NotFound(f"no policy {name!r} for this tenant")
        await self._changed(tenant_id, name, 0)
        return count

    async def _changed(self, tenant_id: str, name: str, version: int) -> None:
        if self.bus is not None:
            await self.bus.publish(
                Event(topic=CHANGED_TOPIC, tenant=tenant_id, type="policy", data={"name": name, "version": version})
            )
