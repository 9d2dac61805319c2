"""The content server's engine: the stages' runtime plus the container operations behind the tools.

One per process (``engine_of(ctx)``). Original bytes go through the kernel's storage service
(``vsm_mcp.storage``, bucket ``VSM_CONTENT_BUCKET``); chunks through the search server's tools
(``index.SearchIndex``); rows in ``content_containers`` / ``content_versions``.
"""

from __future__ import annotations

from typing import Any

from servers.content import store
from servers.content.fetch import Fetcher, FetchLimits
from servers.content.index import SearchIndex
from servers.content.pipeline import StageClock
from servers.content.policy import ContainerPolicy, caller_tags
from servers.content.tables import STATUS_DELETING, STATUS_OK, Container, ContainerVersion
from vsm_mcp.auth import Principal
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import Forbidden, InvalidArguments, NotFound
from vsm_mcp.ssrf import AddressGuard, AllowList
from vsm_mcp.storage.service import service_for

EXTRAS_KEY = "content"
SNIPPET_CHARS = 400
MAX_K = 100


class ContentEngine:
    def __init__(self, ctx: ServerContext) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.db = ctx.db
        self.storage = service_for(ctx)
        self.fetcher = Fetcher(
            AddressGuard(AllowList.parse(s.fetch_allow)),
            FetchLimits(s.fetch_max_bytes, s.fetch_timeout_s, s.fetch_max_redirects),
        )
        self.index = SearchIndex(lambda: ctx.tools, s.content_collection, s.content_index_backend)
        self.bucket = s.content_bucket
        self.batch_size = s.content_batch_size
        self.parallel_batches = s.content_parallel_batches
        self.clock = StageClock()

    # --- reads ------------------------------------------------------------------------
    async def _visible(self, principal: Principal, container_id: str, capability: str) -> Container:
        row = await store.get(self.db, principal.tenant_id, container_id)
        if row is None or row.status == STATUS_DELETING or not ContainerPolicy.parse(row.policy).allows(principal):
            raise NotFound(f"no container {container_id!r}")  # a denied container is not confirmed to exist
        if capability not in row.capabilities:
            raise Forbidden(f"container {container_id!r} does not allow {capability}")
        return row

    async def get(self, principal: Principal, container_id: str, version: int | None, text: bool) -> dict[str, Any]:
        row = await self._visible(principal, container_id, "container_get")
        out = container_dict(row)
        number = version or row.current_version
        if number:
            v = await store.version(self.db, principal.tenant_id, container_id, number)
            if v is None:
                raise NotFound(f"container {container_id!r} has no version {number}")
            out["version"] = version_dict(v, text=text)
        return out

    async def versions(self, principal: Principal, container_id: str) -> dict[str, Any]:
        await self._visible(principal, container_id, "container_versions")
        rows = await store.versions(self.db, principal.tenant_id, container_id)
        return {"container_id": container_id, "versions": [version_dict(v) for v in rows]}

    async def search(self, principal: Principal, query: str, k: int, mode: str) -> dict[str, Any]:
        """Best containers for ``query``: hybrid chunk search in the tenant's collection, pre-filtered
        by policy tags, then every hit re-checked against its container row (the authority)."""
        if not query.strip():
            raise InvalidArguments("query must not be empty")
        if not 1 <= k <= MAX_K:
            raise InvalidArguments(f"k must be in 1..{MAX_K}, got {k}")
        tenant = principal.tenant_id
        tags = caller_tags(principal)
        fetch = min(1000, max(3 * k, 20))
        while True:
            hits = await self.index.search(tenant, query, fetch, tags, mode)
            best: dict[str, dict[str, Any]] = {}
            for h in hits:
                cid = str((h.get("metadata") or {}).get("container") or h.get("id"))
                best.setdefault(cid, h)
            rows = await store.get_many(self.db, tenant, list(best))
            results = []
            for cid, h in best.items():
                row = rows.get(cid)
                if row is None or row.status != STATUS_OK or "container_search" not in row.capabilities:
                    continue
                if not ContainerPolicy.parse(row.policy).allows(principal):
                    continue
                results.append({
                    "container_id": cid, "title": row.title, "source": row.source, "version": row.current_version,
                    "language": row.language, "content_type": row.content_type, "score": h.get("score"),
                    "snippet": str(h.get("text", ""))[:SNIPPET_CHARS],
                })
                if len(results) == k:
                    break
            if len(results) >= k or len(hits) < fetch or fetch >= 1000:
                return {"query": query, "mode": mode, "results": results}
            fetch = min(1000, fetch * 4)

    # --- delete -----------------------------------------------------------------------
    async def delete(self, principal: Principal, container_id: str) -> dict[str, Any]:
        """Chunks, blobs and rows, in that order; marked ``deleting`` first so nothing shows it
        meanwhile and a crash half-way is finished by calling delete again."""
        tenant = principal.tenant_id
        row = await store.get(self.db, tenant, container_id)
        if row is None or not ContainerPolicy.parse(row.policy).allows(principal):
            raise NotFound(f"no container {container_id!r}")
        if "container_delete" not in row.capabilities:
            raise Forbidden(f"container {container_id!r} does not allow container_delete")
        await store.set_status(self.db, tenant, container_id, STATUS_DELETING)
        chunks = await self.index.delete(tenant, [container_id])
        blobs = await self._delete_blobs(tenant, container_id)
        await store.remove(self.db, tenant, container_id)
        return {"container_id": container_id, "deleted": True, "chunks": chunks, "blobs": blobs}

    async def _delete_blobs(self, tenant: str, container_id: str) -> int:
        prefix, removed = f"c/{container_id}/", 0
        while True:
            try:
                rows, _ = await self.storage.list_objects(tenant, self.bucket, prefix=prefix, limit=1000)
            except NotFound:
                return removed  # the bucket was never created: no blob
            if not rows:
                return removed
            for r in rows:
                removed += int(await self.storage.delete(tenant, self.bucket, r.key))

    async def aclose(self) -> None:
        await self.fetcher.aclose()


def container_dict(row: Container) -> dict[str, Any]:
    return {
        "container_id": row.id, "source": row.source, "source_kind": row.source_kind, "title": row.title,
        "content_type": row.content_type, "language": row.language, "status": row.status, "error": row.error or None,
        "current_version": row.current_version, "sha256": row.current_sha or None,
        "indexed": bool(row.current_sha) and row.indexed_sha == row.current_sha, "lineage": row.lineage,
        "meta": row.meta, "policy": ContainerPolicy.parse(row.policy).as_dict(), "capabilities": row.capabilities,
        "etag": row.etag or None, "last_modified": row.last_modified or None,
        "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat(),
    }


def version_dict(v: ContainerVersion, *, text: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "number": v.number, "sha256": v.sha256, "raw_sha256": v.raw_sha256, "size": v.size,
        "content_type": v.content_type, "language": v.language, "title": v.title, "blob_key": v.blob_key,
        "lineage": v.lineage, "created_at": v.created_at.isoformat(),
    }
    if text:
        out["text"] = v.text
    return out


def engine_of(ctx: ServerContext) -> ContentEngine:
    engine = ctx.extras.get(EXTRAS_KEY)
    if engine is None:
        engine = ctx.extras[EXTRAS_KEY] = ContentEngine(ctx)
    assert isinstance(engine, ContentEngine)
    return engine
