"""Rows of ``connectors`` and ``connector_items`` (tenant sessions: RLS on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlmodel import col

from vsm_mcp.connectors.tables import ConnectorItem, ConnectorRow
from vsm_mcp.db import Database
from vsm_mcp.errors import Conflict, NotFound
from vsm_mcp.models import utcnow


async def add(db: Database, row: ConnectorRow) -> None:
    async with db.tenant(row.tenant_id) as s:
        found = (await s.execute(select(ConnectorRow).where(col(ConnectorRow.name) == row.name))).scalars().first()
        if found is not None:
            raise Conflict(f"a connector named {row.name!r} exists already (connector_remove it first)")
        s.add(row)


async def get(db: Database, tenant: str, name: str, types: Sequence[str] | None = None) -> ConnectorRow:
    async with db.tenant(tenant) as s:
        row = (await s.execute(select(ConnectorRow).where(col(ConnectorRow.name) == name))).scalars().first()
    if row is None or (types is not None and row.type not in types):
        raise NotFound(f"no connector {name!r}")
    return row


async def list_(db: Database, tenant: str, types: Sequence[str]) -> list[ConnectorRow]:
    async with db.tenant(tenant) as s:
        rows = (await s.execute(
            select(ConnectorRow).where(col(ConnectorRow.type).in_(list(types))).order_by(col(ConnectorRow.name))
        )).scalars().all()
    return list(rows)


async def update(db: Database, tenant: str, name: str, **fields: Any) -> None:
    async with db.tenant(tenant) as s:
        row = (await s.execute(select(ConnectorRow).where(col(ConnectorRow.name) == name))).scalars().first()
        if row is None:
            return
        for key, value in fields.items():
            setattr(row, key, value)
        row.updated_at = utcnow()
        s.add(row)


async def save_page(db: Database, tenant: str, name: str, cursor: dict[str, Any], counts: dict[str, int]) -> None:
    """The cursor after a page and the counts so far — called only once that page's items are in."""
    async with db.tenant(tenant) as s:
        row = (await s.execute(select(ConnectorRow).where(col(ConnectorRow.name) == name))).scalars().first()
        if row is None:
            return
        row.cursor = cursor
        merged = dict(row.counts)
        for key, value in counts.items():
            merged[key] = merged.get(key, 0) + value
        row.counts, row.updated_at = merged, utcnow()
        s.add(row)


async def items(db: Database, tenant: str, connector: str, ids: Sequence[str]) -> dict[str, ConnectorItem]:
    if not ids:
        return {}
    async with db.tenant(tenant) as s:
        rows = (await s.execute(select(ConnectorItem).where(
            col(ConnectorItem.connector) == connector, col(ConnectorItem.external_id).in_(list(ids))
        ))).scalars().all()
    return {r.external_id: r for r in rows}


async def item_by_container(db: Database, tenant: str, connector: str | None, key: str) -> ConnectorItem | None:
    """An item by its container id or its external id (within ``connector`` when given)."""
    async with db.tenant(tenant) as s:
        q = select(ConnectorItem).where(
            (col(ConnectorItem.container_id) == key) | (col(ConnectorItem.external_id) == key))
        if connector:
            q = q.where(col(ConnectorItem.connector) == connector)
        return (await s.execute(q)).scalars().first()


async def put_items(db: Database, tenant: str, rows: Sequence[ConnectorItem]) -> None:
    """Insert or update item rows (one transaction)."""
    if not rows:
        return
    async with db.tenant(tenant) as s:
        for row in rows:
            await s.merge(row)


async def mark_seen(db: Database, tenant: str, connector: str, ids: Sequence[str], sync: int) -> None:
    if not ids:
        return
    async with db.tenant(tenant) as s:
        rows = (await s.execute(select(ConnectorItem).where(
            col(ConnectorItem.connector) == connector, col(ConnectorItem.external_id).in_(list(ids))
        ))).scalars().all()
        for r in rows:
            r.seen = sync
            s.add(r)


async def unseen(db: Database, tenant: str, connector: str, sync: int) -> list[ConnectorItem]:
    async with db.tenant(tenant) as s:
        rows = (await s.execute(select(ConnectorItem).where(
            col(ConnectorItem.connector) == connector, col(ConnectorItem.seen) < sync
        ))).scalars().all()
    return list(rows)


async def drop_items(db: Database, tenant: str, connector: str, ids: Sequence[str] | None = None) -> None:
    async with db.tenant(tenant) as s:
        q = delete(ConnectorItem).where(col(ConnectorItem.connector) == connector)
        if ids is not None:
            q = q.where(col(ConnectorItem.external_id).in_(list(ids)))
        await s.execute(q)


async def all_items(db: Database, tenant: str, connector: str) -> list[ConnectorItem]:
    async with db.tenant(tenant) as s:
        rows = (await s.execute(select(ConnectorItem).where(col(ConnectorItem.connector) == connector))).scalars().all()
    return list(rows)


async def remove(db: Database, tenant: str, name: str) -> None:
    async with db.tenant(tenant) as s:
        await s.execute(delete(ConnectorItem).where(col(ConnectorItem.connector) == name))
        await s.execute(delete(ConnectorRow).where(col(ConnectorRow.name) == name))
