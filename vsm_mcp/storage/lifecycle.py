"""Lifecycle sweep: expire old objects and versions, keep the last N versions, reap orphan blobs.

Runs per bucket on demand (``bucket_sweep``) and for every tenant periodically
(``run_sweeper``, every ``VSM_STORAGE_SWEEP_INTERVAL_S``). Each step works through
``Database.tenant``, tenant by tenant, so it needs no privileged database role.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import delete, text
from sqlmodel import col, select

from vsm_mcp.errors import VsmError
from vsm_mcp.models import Artifact, utcnow
from vsm_mcp.storage.models import Bucket, ObjectVersion

if TYPE_CHECKING:
    from vsm_mcp.storage.service import StorageService

log = logging.getLogger("vsm_mcp.storage")
ORPHAN_GRACE = timedelta(hours=1)  # a blob younger than this may belong to a put still committing
PAGE = 500


@dataclass
class SweepReport:
    expired: int = 0
    versions_removed: int = 0
    orphans_removed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def _remove_versions(svc: StorageService, tenant: str, b: Bucket, rows: list[ObjectVersion]) -> int:
    from vsm_mcp.storage.service import blob_key

    if not rows:
        return 0
    async with svc.db.tenant(tenant) as s:
        await s.execute(delete(ObjectVersion).where(col(ObjectVersion.id).in_([r.id for r in rows])))
    store = svc.backend(b.backend)
    for row in rows:
        await svc._drop_blob(store, blob_key(tenant, b.name, row.id))
    return len(rows)


async def prune_versions(svc: StorageService, tenant: str, b: Bucket, key: str | None = None) -> int:
    """Delete noncurrent versions beyond ``keep_versions`` (newest kept), for one key or the whole bucket."""
    if b.keep_versions is None:
        return 0
    async with svc.db.tenant(tenant) as s:
        stmt = select(ObjectVersion).where(ObjectVersion.bucket == b.name)
        if key is not None:
            stmt = stmt.where(ObjectVersion.key == key)
        stmt = stmt.order_by(col(ObjectVersion.key), col(ObjectVersion.updated_at).desc(), col(ObjectVersion.id))
        rows = list((await s.execute(stmt)).scalars())
    doomed: list[ObjectVersion] = []
    seen: dict[str, int] = {}
    for row in rows:
        seen[row.key] = seen.get(row.key, 0) + 1
        if seen[row.key] > b.keep_versions:
            doomed.append(row)
    return await _remove_versions(svc, tenant, b, doomed)


async def _expire(svc: StorageService, tenant: str, b: Bucket, now: datetime, report: SweepReport) -> None:
    if b.expire_days is None:
        return
    cutoff = now - timedelta(days=b.expire_days)
    while True:
        async with svc.db.tenant(tenant) as s:
            stmt = select(Artifact.key).where(Artifact.bucket == b.name, col(Artifact.updated_at) < cutoff)
            keys = [k for (k,) in (await s.execute(stmt.limit(PAGE))).all()]
        for key in keys:
            report.expired += int(await svc.delete(tenant, b.name, key))
        if len(keys) < PAGE:
            break
    async with svc.db.tenant(tenant) as s:
        stmt2 = select(ObjectVersion).where(ObjectVersion.bucket == b.name, col(ObjectVersion.updated_at) < cutoff)
        old = list((await s.execute(stmt2)).scalars())
    report.versions_removed += await _remove_versions(svc, tenant, b, old)


async def _reap_orphans(svc: StorageService, tenant: str, b: Bucket, now: datetime, report: SweepReport) -> None:
    """Blobs with no row: left by a process that died between writing bytes and committing."""
    store = svc.backend(b.backend)
    after, prefix = "", f"{tenant}/{b.name}/"
    while True:
        page = await store.list(prefix, after=after, limit=PAGE)
        ids = {info.key.rsplit("/", 1)[-1]: info for info in page.items}
        if ids:
            async with svc.db.tenant(tenant) as s:
                known = {r for (r,) in (await s.execute(select(Artifact.id).where(col(Artifact.id).in_(ids)))).all()}
                known |= {
                    r for (r,) in (await s.execute(select(ObjectVersion.id).where(col(ObjectVersion.id).in_(ids)))).all()
                }
            for blob_id, info in ids.items():
                if blob_id not in known and _aware(info.modified) < now - ORPHAN_GRACE:
                    await svc._drop_blob(store, info.key)
                    report.orphans_removed += 1
        if page.next_after is None:
            break
        after = page.next_after


async def sweep_bucket(svc: StorageService, tenant: str, name: str, now: datetime | None = None) -> SweepReport:
    """Apply ``name``'s lifecycle rules now (``now`` may be given to evaluate ages at another instant)."""
    now = now or utcnow()
    b = await svc.bucket(tenant, name)
    report = SweepReport()
    await _expire(svc, tenant, b, now, report)
    report.versions_removed += await prune_versions(svc, tenant, b)
    await _reap_orphans(svc, tenant, b, now, report)
    async with svc.db.tenant(tenant) as s:
        row = (await s.execute(select(Bucket).where(Bucket.id == b.id))).scalars().first()
        if row is not None:
            row.last_swept_at = utcnow()
    return report


async def sweep_all(svc: StorageService, now: datetime | None = None) -> SweepReport:
    """Sweep every bucket of every tenant; a failing bucket is logged and skipped."""
    total = SweepReport()
    async with svc.db.system() as s:
        tenants = [r[0] for r in (await s.execute(text("SELECT id FROM tenants"))).all()]
    for tenant in tenants:
        async with svc.db.tenant(tenant) as s:
            names = [n for (n,) in (await s.execute(select(Bucket.name))).all()]
        for name in names:
            try:
                r = await sweep_bucket(svc, tenant, name, now)
            except VsmError:
                log.warning("lifecycle sweep of %s/%s failed", tenant, name, exc_info=True)
                continue
            total.expired += r.expired
            total.versions_removed += r.versions_removed
            total.orphans_removed += r.orphans_removed
    return total


async def run_sweeper(svc: StorageService, interval_s: float) -> None:
    """Sweep forever every ``interval_s`` seconds (cancel the task to stop)."""
    while True:
        await anyio.sleep(interval_s)
        try:
            await sweep_all(svc)
        except VsmError:
            log.warning("lifecycle sweep failed; retrying next interval", exc_info=True)
