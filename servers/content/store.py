"""Container and version rows: the containerize stage's database half, batch at a time.

Idempotent by content hash: a version is unique per (container, sha256 of the normalized text),
so running ``commit`` twice for the same document (a retried step, a resumed workflow, an
unchanged re-ingest) adds nothing. Content that returns to an earlier text points the container
back at that version — versions are content-addressed, so no new one is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from servers.content.policy import CAPABILITIES
from servers.content.tables import STATUS_DELETING, STATUS_FAILED, STATUS_OK, Container, ContainerVersion
from vsm_mcp.db import Database
from vsm_mcp.errors import Conflict
from vsm_mcp.models import utcnow


@dataclass
class Doc:
    """A normalized document ready to be containerized."""

    source: str
    source_kind: str
    sha256: str
    text: str
    title: str
    language: str
    content_type: str
    raw_sha256: str
    size: int
    lineage: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)
    etag: str = ""
    last_modified: str = ""
    blob_key: str = ""


@dataclass
class Outcome:
    container_id: str
    source: str
    version: int
    sha256: str
    created: bool  # a new version was made


async def containers_by_source(db: Database, tenant: str, sources: Sequence[str]) -> dict[str, Container]:
    if not sources:
        return {}
    async with db.tenant(tenant) as s:
        rows = (await s.execute(select(Container).where(col(Container.source).in_(list(sources))))).scalars().all()
    return {r.source: r for r in rows}


async def ensure_containers(db: Database, tenant: str, docs: Sequence[Doc]) -> dict[str, Container]:
    """The container of each doc's source, created when missing (races resolved by the unique key)."""
    for _attempt in range(5):
        have = await containers_by_source(db, tenant, [d.source for d in docs])
        missing = {d.source: d for d in docs if d.source not in have}
        if not missing:
            return have
        try:
            async with db.tenant(tenant) as s:
                for d in missing.values():
                    s.add(Container(
                        tenant_id=tenant, source=d.source, source_kind=d.source_kind, lineage=d.lineage,
                        policy=d.policy, capabilities=d.capabilities or list(CAPABILITIES), meta=d.meta,
                    ))
        except IntegrityError:
            continue  # another writer created some of them: read again
    raise Conflict("too many concurrent ingests of the same sources; retry")


async def existing_versions(db: Database, tenant: str, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """{(container id, sha256): version number} for the pairs that already exist."""
    if not pairs:
        return {}
    ids = sorted({c for c, _ in pairs})
    async with db.tenant(tenant) as s:
        rows = (await s.execute(
            select(ContainerVersion.container_id, ContainerVersion.sha256, ContainerVersion.number)
            .where(col(ContainerVersion.container_id).in_(ids), col(ContainerVersion.sha256).in_(sorted({h for _, h in pairs})))
        )).all()
    return {(c, h): n for c, h, n in rows}


async def commit(db: Database, tenant: str, docs: Sequence[Doc], containers: dict[str, Container]) -> list[Outcome]:
    """Add the versions that do not exist yet and point each container at its doc's version."""
    for _attempt in range(5):
        try:
            return await _commit(db, tenant, docs, containers)
        except IntegrityError:
            continue  # a concurrent commit numbered or added the same version: recompute
    raise Conflict("too many concurrent ingests of the same containers; retry")


async def _commit(db: Database, tenant: str, docs: Sequence[Doc], containers: dict[str, Container]) -> list[Outcome]:
    out: list[Outcome] = []
    async with db.tenant(tenant) as s:
        ids = [containers[d.source].id for d in docs]
        rows = {r.id: r for r in (await s.execute(select(Container).where(col(Container.id).in_(ids)))).scalars()}
        known = {
            (c, h): n for c, h, n in (await s.execute(
                select(ContainerVersion.container_id, ContainerVersion.sha256, ContainerVersion.number)
                .where(col(ContainerVersion.container_id).in_(ids), col(ContainerVersion.sha256).in_([d.sha256 for d in docs]))
            )).all()
        }
        top = dict((await s.execute(
            select(ContainerVersion.container_id, func.max(ContainerVersion.number))
            .where(col(ContainerVersion.container_id).in_(ids)).group_by(col(ContainerVersion.container_id))
        )).tuples().all())
        now = utcnow()
        for d in docs:
            row = rows[containers[d.source].id]
            number = known.get((row.id, d.sha256))
            created = number is None
            if number is None:
                number = int(top.get(row.id) or 0) + 1
                top[row.id] = number
                known[(row.id, d.sha256)] = number
                s.add(ContainerVersion(
                    tenant_id=tenant, container_id=row.id, number=number, sha256=d.sha256, raw_sha256=d.raw_sha256,
                    size=d.size, content_type=d.content_type, language=d.language, title=d.title,
                    blob_key=d.blob_key, text=d.text, lineage=d.lineage,
                ))
            if row.status == STATUS_DELETING:
                continue  # being deleted: the delete wins
            row.current_sha, row.current_version = d.sha256, number
            row.title, row.language, row.content_type = d.title, d.language, d.content_type
            row.status, row.error = STATUS_OK, ""
            row.etag, row.last_modified, row.lineage = d.etag, d.last_modified, d.lineage
            if d.policy:
                row.policy = d.policy
            if d.capabilities:
                row.capabilities = d.capabilities
            if d.meta:
                row.meta = d.meta
            row.updated_at = now
            s.add(row)
            out.append(Outcome(row.id, d.source, number, d.sha256, created))
    return out


async def mark_failed(db: Database, tenant: str, failures: dict[str, tuple[str, str, dict[str, Any]]]) -> list[str]:
    """``{source: (kind, reason, lineage)}``: set (or create) those containers as failed; their ids."""
    if not failures:
        return []
    ids: list[str] = []
    for _attempt in range(5):
        try:
            async with db.tenant(tenant) as s:
                rows = {r.source: r for r in (await s.execute(
                    select(Container).where(col(Container.source).in_(list(failures)))
                )).scalars()}
                for source, (kind, reason, lineage) in failures.items():
                    row = rows.get(source) or Container(
                        tenant_id=tenant, source=source, source_kind=kind, lineage=lineage, capabilities=list(CAPABILITIES)
                    )
                    if row.status == STATUS_DELETING:
                        continue
                    row.status, row.error, row.updated_at = STATUS_FAILED, reason[:2000], utcnow()
                    s.add(row)
                    ids.append(row.id)
            return ids
        except IntegrityError:
            ids.clear()
    raise Conflict("too many concurrent ingests of the same sources; retry")


async def needing_index(db: Database, tenant: str, ids: Sequence[str]) -> list[tuple[Container, ContainerVersion]]:
    """The containers among ``ids`` whose current version is not what the index holds."""
    if not ids:
        return []
    async with db.tenant(tenant) as s:
        rows = (await s.execute(
            select(Container, ContainerVersion)
            .join(ContainerVersion, col(ContainerVersion.container_id) == col(Container.id))
            .where(col(Container.id).in_(list(ids)), col(Container.status) == STATUS_OK,
                   col(ContainerVersion.sha256) == col(Container.current_sha),
                   col(Container.indexed_sha) != col(Container.current_sha))
        )).tuples().all()
    return list(rows)


async def mark_indexed(db: Database, tenant: str, done: dict[str, str]) -> None:
    """``{container id: sha}`` now in the index (only where that sha is still current)."""
    if not done:
        return
    async with db.tenant(tenant) as s:
        rows = (await s.execute(select(Container).where(col(Container.id).in_(list(done))))).scalars().all()
        for row in rows:
            if row.current_sha == done[row.id]:
                row.indexed_sha = done[row.id]
                s.add(row)


async def get(db: Database, tenant: str, container_id: str) -> Container | None:
    async with db.tenant(tenant) as s:
        return (await s.execute(select(Container).where(col(Container.id) == container_id))).scalars().first()


async def get_many(db: Database, tenant: str, ids: Sequence[str]) -> dict[str, Container]:
    if not ids:
        return {}
    async with db.tenant(tenant) as s:
        rows = (await s.execute(select(Container).where(col(Container.id).in_(list(ids))))).scalars().all()
    return {r.id: r for r in rows}


async def versions(db: Database, tenant: str, container_id: str) -> list[ContainerVersion]:
    async with db.tenant(tenant) as s:
        return list((await s.execute(
            select(ContainerVersion).where(col(ContainerVersion.container_id) == container_id)
            .order_by(col(ContainerVersion.number))
        )).scalars())


async def version(db: Database, tenant: str, container_id: str, number: int) -> ContainerVersion | None:
    async with db.tenant(tenant) as s:
        return (await s.execute(
            select(ContainerVersion).where(col(ContainerVersion.container_id) == container_id,
                                           col(ContainerVersion.number) == number)
        )).scalars().first()


async def set_status(db: Database, tenant: str, container_id: str, status: str) -> None:
    async with db.tenant(tenant) as s:
        row = (await s.execute(select(Container).where(col(Container.id) == container_id))).scalars().first()
        if row is not None:
            row.status, row.updated_at = status, utcnow()
            s.add(row)


async def remove(db: Database, tenant: str, container_id: str) -> None:
    async with db.tenant(tenant) as s:
        await s.execute(delete(ContainerVersion).where(col(ContainerVersion.container_id) == container_id))
        await s.execute(delete(Container).where(col(Container.id) == container_id))
