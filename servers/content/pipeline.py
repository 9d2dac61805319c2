"""The ingest stages as plain functions, batch at a time: fetch → normalize → containerize → index.

``prepare`` runs the first three for a batch of items and returns what the workflow needs
next (the batch's container ids, the links found, counts, failures) as plain JSON, so it can be
a durable step's recorded output. ``index`` brings the search index in line with the
containers' current versions. Both are idempotent by content hash: re-running them (a retried
step, a resumed workflow, a re-ingest) adds no version, blob or chunk that is already there.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar
from urllib.parse import urldefrag

import anyio

from servers.content import store
from servers.content.normalize import Normalized, Unreadable, normalize
from servers.content.policy import ContainerPolicy
from servers.content.store import Doc
from vsm_mcp.errors import NotFound, QuotaExceeded, VsmError

T = TypeVar("T")
FETCH_CONCURRENCY = 8
BLOB_CONCURRENCY = 8


@dataclass
class Item:
    """One thing to ingest. ``kind``: ``url`` (ref = URL), ``storage`` (ref = ``bucket/key``) or
    ``item`` (ref = a source id such as ``<connector>:<external id>``, bytes in ``data``)."""

    kind: str
    ref: str
    data: bytes | None = None
    content_type: str = ""
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("data")
        return out


@dataclass
class Got:
    """A fetched (or handed-over) document before normalization."""

    item: Item
    source: str
    body: bytes
    content_type: str
    name: str
    lineage: dict[str, Any]
    etag: str = ""
    last_modified: str = ""


@dataclass
class StageClock:
    """Seconds and documents per stage (the benchmark reads these)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("fetch", "normalize", "containerize", "index"), 0.0))
    docs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("fetch", "normalize", "containerize", "index"), 0))

    def add(self, stage: str, seconds: float, docs: int) -> None:
        self.seconds[stage] += seconds
        self.docs[stage] += docs


class Runtime(Protocol):
    """What the stages use: database, storage, fetcher, index, bucket (the engine provides it)."""

    db: Any
    storage: Any
    fetcher: Any
    index: Any
    bucket: str
    clock: StageClock


async def _gather(limit: int, calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    out: list[Any] = [None] * len(calls)
    sem = anyio.Semaphore(limit)

    async def run(i: int) -> None:
        async with sem:
            out[i] = await calls[i]()

    async with anyio.create_task_group() as tg:
        for i in range(len(calls)):
            tg.start_soon(run, i)
    return out


def source_of_url(url: str) -> str:
    return urldefrag(url)[0]


# --- fetch ------------------------------------------------------------------------------

async def fetch(
    rt: Runtime, tenant: str, items: Sequence[Item], conditional: bool = True
) -> tuple[list[Got], list[str], dict[str, str]]:
    """(fetched documents, container ids unchanged since last time (HTTP 304), {ref: failure reason}).
    ``conditional=False`` fetches every body (pages whose links the crawl still needs)."""
    started = time.perf_counter()
    urls = [it for it in items if it.kind == "url"]
    refs = [source_of_url(it.ref) for it in urls] if conditional else []
    known = await store.containers_by_source(rt.db, tenant, refs)
    failures: dict[str, str] = {}
    unchanged: list[str] = []

    async def one(it: Item) -> Got | None:
        try:
            return await _fetch_one(rt, tenant, it, known, unchanged)
        except VsmError as exc:
            failures[it.ref] = f"{exc.label}: {exc.message}"
            return None

    got = [g for g in await _gather(FETCH_CONCURRENCY, [partial(one, it) for it in items]) if g is not None]
    rt.clock.add("fetch", time.perf_counter() - started, len(items))
    return got, unchanged, failures


async def _fetch_one(rt: Runtime, tenant: str, it: Item, known: dict[str, Any], unchanged: list[str]) -> Got | None:
    if it.kind == "item":
        if it.data is None:
            raise NotFound(f"item {it.ref!r} carries no bytes")
        return Got(it, it.ref, it.data, it.content_type, it.meta.get("name", it.ref), it.lineage)
    if it.kind == "storage":
        bucket, _, key = it.ref.partition("/")
        limit = rt.fetcher.limits.max_bytes
        if (await rt.storage.stat(tenant, bucket, key)).size > limit:
            raise QuotaExceeded(f"{it.ref} is larger than {limit} bytes (VSM_FETCH_MAX_BYTES)")
        row, body = await rt.storage.read(tenant, bucket, key)
        lineage = {"kind": "storage", "bucket": bucket, "key": key, "object_sha256": row.sha256, **it.lineage}
        return Got(it, f"storage:{it.ref}", body, it.content_type or row.content_type, key, lineage)
    prev = known.get(source_of_url(it.ref))
    etag = last_modified = None
    if prev is not None and prev.status == "ok" and prev.current_sha:
        etag, last_modified = prev.etag or None, prev.last_modified or None
    fetched = await rt.fetcher.fetch(it.ref, etag=etag, last_modified=last_modified)
    if fetched.not_modified and prev is not None:
        unchanged.append(prev.id)
        return None
    lineage = {"kind": "url", "url": it.ref, "final_url": fetched.final_url, "redirects": fetched.redirects,
               "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **it.lineage}
    return Got(it, source_of_url(fetched.final_url), fetched.body, it.content_type or fetched.content_type,
               fetched.final_url, lineage, fetched.etag or "", fetched.last_modified or "")


# --- normalize --------------------------------------------------------------------------

def normalize_all(rt: Runtime, got: Sequence[Got]) -> tuple[list[tuple[Got, Normalized]], dict[str, str]]:
    """Normalize each fetched document; ``{source: reason}`` for the unreadable ones."""
    started = time.perf_counter()
    ok: list[tuple[Got, Normalized]] = []
    failed: dict[str, str] = {}
    for g in got:
        try:
            ok.append((g, normalize(g.body, g.content_type, g.name)))
        except Unreadable as exc:
            failed[g.source] = exc.message
    rt.clock.add("normalize", time.perf_counter() - started, len(got))
    return ok, failed


# --- containerize -----------------------------------------------------------------------

def blob_key(container_id: str, sha256: str) -> str:
    return f"c/{container_id}/{sha256}"


async def containerize(rt: Runtime, tenant: str, docs: Sequence[tuple[Got, Normalized]]) -> list[store.Outcome]:
    """Original bytes to storage (new versions only), then version and container rows."""
    started = time.perf_counter()
    by_source: dict[str, Doc] = {}
    raw: dict[str, Got] = {}
    for g, n in docs:  # two links redirecting to one page: one document
        it = g.item
        policy = ContainerPolicy.parse(it.policy).as_dict() if it.policy else {}
        by_source[g.source] = Doc(
            source=g.source, source_kind=it.kind, sha256=n.sha256, text=n.text, title=it.title or n.title,
            language=n.language, content_type=n.kind, raw_sha256=hashlib.sha256(g.body).hexdigest(),
            size=len(g.body), lineage=g.lineage, meta=it.meta, policy=policy, capabilities=it.capabilities,
            etag=g.etag, last_modified=g.last_modified,
        )
        raw[g.source] = g
    batch = list(by_source.values())
    containers = await store.ensure_containers(rt.db, tenant, batch)
    exists = await store.existing_versions(rt.db, tenant, [(containers[d.source].id, d.sha256) for d in batch])
    new = [d for d in batch if (containers[d.source].id, d.sha256) not in exists]
    for d in batch:
        d.blob_key = blob_key(containers[d.source].id, d.sha256)

    async def put(d: Doc) -> None:
        g = raw[d.source]
        await rt.storage.put(tenant, rt.bucket, d.blob_key, g.body, content_type=g.content_type or None,
                             meta={"container": containers[d.source].id, "sha256": d.sha256})

    await _gather(BLOB_CONCURRENCY, [partial(put, d) for d in new])
    out = await store.commit(rt.db, tenant, batch, containers)
    rt.clock.add("containerize", time.perf_counter() - started, len(batch))
    return out


# --- the batch step ---------------------------------------------------------------------

async def prepare(rt: Runtime, tenant: str, items: Sequence[Item], want_links: bool) -> dict[str, Any]:
    """fetch → normalize → containerize for one batch; JSON result for the workflow."""
    got, unchanged, fetch_failed = await fetch(rt, tenant, items, conditional=not want_links)
    normalized, unreadable = await anyio.to_thread.run_sync(normalize_all, rt, got)
    outcomes = await containerize(rt, tenant, normalized)
    kinds = {g.source: (g.item.kind, g.lineage) for g in got}
    failed_ids = await store.mark_failed(
        rt.db, tenant, {src: (kinds[src][0], reason, kinds[src][1]) for src, reason in unreadable.items()}
    )
    links: list[str] = []
    if want_links:
        for _g, n in normalized:
            links.extend(n.links)
    return {
        "containers": sorted({o.container_id for o in outcomes} | set(unchanged)),
        "created": sum(o.created for o in outcomes),
        "unchanged": len(unchanged) + sum(not o.created for o in outcomes),
        "sources": sorted({o.source for o in outcomes}),
        "outcomes": [asdict(o) for o in outcomes],
        "failed": [{"ref": ref, "reason": why} for ref, why in sorted(fetch_failed.items())]
        + [{"ref": src, "reason": why} for src, why in sorted(unreadable.items())],
        "failed_containers": failed_ids,
        "bytes": sum(len(g.body) for g in got),
        "links": list(dict.fromkeys(links)),
    }


# --- index ------------------------------------------------------------------------------

async def index(rt: Runtime, tenant: str, container_ids: Sequence[str]) -> dict[str, int]:
    """Index the current version of each container the index does not hold yet."""
    started = time.perf_counter()
    todo = await store.needing_index(rt.db, tenant, container_ids)
    chunks = 0
    if todo:
        docs = []
        for c, v in todo:
            policy = ContainerPolicy.parse(c.policy)
            docs.append({
                "id": c.id, "text": v.text, "tags": policy.tags(),
                "metadata": {"container": c.id, "version": v.number, "sha256": v.sha256, "title": v.title,
                             "source": c.source, "language": v.language},
            })
        chunks = await rt.index.upsert(tenant, docs)
        await store.mark_indexed(rt.db, tenant, {c.id: v.sha256 for c, v in todo})
    rt.clock.add("index", time.perf_counter() - started, len(todo))
    return {"indexed": len(todo), "chunks": chunks}
