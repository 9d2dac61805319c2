"""Collections, indexing and hybrid search behind the search server's tools.

The database (``search_collections``, ``search_chunks``; tenant-scoped sessions, RLS on
PostgreSQL) is the source of truth. Each (tenant, collection) gets an in-memory ``VectorIndex``
built from its chunk rows on first use and kept in step with this process's writes; every write
bumps the collection's ``version``, so an index another replica has made stale is rebuilt on the
next search. Indexes are keyed by tenant and also filter on the tenant, so a search can only ever
see its own tenant's chunks.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from servers.search.chunking import DEFAULT_CHUNK_WORDS, DEFAULT_OVERLAP_WORDS, chunk_text
from servers.search.hybrid import Bm25Side, fuse
from servers.search.tables import SearchChunk, SearchCollection
from vsm_mcp.context import ServerContext
from vsm_mcp.embeddings import Embedder, make_embedder
from vsm_mcp.errors import Conflict, InvalidArguments, NotFound
from vsm_mcp.vectors import METRICS, Filter, VectorIndex, check_matrix, make_index

BACKENDS = ("usearch", "pq", "pgvector")
TUNABLE = {
    "usearch": {"connectivity", "expansion_add", "expansion_search", "dtype"},
    "pq": {"nlist", "m", "nbits", "nprobe", "rerank", "train_min"},
    "pgvector": {"m", "ef_construction", "ef_search"},
}
SHARED = ("pgvector",)  # backends whose vectors live outside the process, shared by every replica
MAX_DOCS_PER_CALL = 1000


@dataclass
class LiveIndex:
    """One collection's in-memory state at one ``version``."""

    version: int
    index: VectorIndex
    tags: dict[int, tuple[str, ...]] = field(default_factory=dict)
    texts: dict[int, str] = field(default_factory=dict)
    bm25: Bm25Side | None = None


@dataclass
class DocInput:
    doc_id: str
    text: str
    vector: list[float] | None
    meta: dict[str, Any]
    tags: tuple[str, ...]


class SearchEngine:
    """Per-process search state: live indexes, embedders and per-collection write locks."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.root = Path(ctx.settings.home) / "search"
        self._live: dict[tuple[str, str], LiveIndex] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._embedders: dict[str, Embedder] = {}
        # pgvector: one open index (connection) per collection; its table is the vector side of
        # the collection for every replica, so it is written on every write, never rebuilt.
        self._shared: dict[tuple[str, str], VectorIndex] = {}

    def embedder(self, spec: str) -> Embedder:
        if spec not in self._embedders:
            self._embedders[spec] = make_embedder(spec)
        return self._embedders[spec]

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    # --- collections ----------------------------------------------------------------------

    async def _collection(self, session: AsyncSession, name: str) -> SearchCollection:
        row = (await session.execute(select(SearchCollection).where(col(SearchCollection.name) == name))).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no collection named {name!r}")
        return row

    async def list_collections(self, tenant: str) -> list[dict[str, Any]]:
        async with self.ctx.db.tenant(tenant) as session:
            rows = (await session.execute(select(SearchCollection).order_by(col(SearchCollection.name)))).scalars().all()
            counts: dict[str, int] = dict(
                (await session.execute(
                    select(col(SearchChunk.collection_id), func.count(func.distinct(col(SearchChunk.doc_id))))
                    .group_by(col(SearchChunk.collection_id))
                )).tuples().all()
            )
        return [{**_describe(r), "documents": int(counts.get(r.id, 0))} for r in rows]

    async def create(
        self, tenant: str, name: str, dimension: int | None, metric: str, backend: str,
        embedder: str | None, params: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        if not name or len(name) > 128:
            raise InvalidArguments("collection name must be 1..128 characters")
        if metric not in METRICS:
            raise InvalidArguments(f"metric {metric!r} is not supported; use one of {', '.join(METRICS)}")
        if backend not in BACKENDS:
            raise InvalidArguments(f"backend {backend!r} is not available here; use one of {', '.join(BACKENDS)}")
        unknown = set(params or {}) - TUNABLE[backend]
        if unknown:
            raise InvalidArguments(f"unknown {backend} parameter(s): {', '.join(sorted(unknown))}")
        spec = embedder or self.ctx.settings.embedder
        emb_dim = self.embedder(spec).dim
        dim = dimension if dimension is not None else emb_dim
        if backend in SHARED:
            self._pgvector_dsn()  # configured at all? (the table is made once the row exists)
        else:
            make_index(backend, dim, metric, **_index_params(backend, params or {}, None))  # validates the knobs
        row = SearchCollection(
            tenant_id=tenant, name=name, dim=dim, metric=metric, backend=backend, embedder=spec if dim == emb_dim else "",
            params=dict(params or {}),
        )
        try:
            async with self.ctx.db.tenant(tenant) as session:
                exists = (await session.execute(select(col(SearchCollection.id)).where(col(SearchCollection.name) == name))).first()
                if exists:
                    raise Conflict(f"collection {name!r} already exists")
                session.add(row)
        except IntegrityError:  # a concurrent create of the same name won the race
            raise Conflict(f"collection {name!r} already exists") from None
        if backend in SHARED:
            try:
                await self._shared_index(tenant, row, [])
            except Exception:
                async with self.ctx.db.tenant(tenant) as session:  # no extension, bad knobs …: no collection
                    await session.execute(delete(SearchCollection).where(col(SearchCollection.id) == row.id))
                raise
        return _describe(row)

    def _pgvector_dsn(self) -> str:
        s = self.ctx.settings
        url = s.search_pgvector_url or (s.migration_database_url if s.is_postgres else "")
        if not url:
            raise InvalidArguments(
                "backend 'pgvector' needs PostgreSQL with the vector extension: set VSM_SEARCH_PGVECTOR_URL"
            )
        return url

    async def _shared_index(self, tenant: str, coll: SearchCollection, rows: Sequence[SearchChunk] | None) -> VectorIndex:
        """The collection's pgvector index, opened once per process. With ``rows`` (the chunk
        table, the source of truth) it is checked on first open and re-filled if its row count
        differs — a process that died between committing chunks and writing vectors leaves a gap."""
        key = (tenant, coll.id)
        index = self._shared.get(key)
        if index is None:
            params = {**dict(coll.params), "dsn": self._pgvector_dsn(), "table": "vsm_vec_" + coll.id.replace("-", "")}
            index = await anyio.to_thread.run_sync(lambda: make_index(coll.backend, coll.dim, coll.metric, **params))
            if rows is not None and await anyio.to_thread.run_sync(len, index) != len(rows):
                await anyio.to_thread.run_sync(index.clear)  # type: ignore[attr-defined]
                await anyio.to_thread.run_sync(_upsert, index, tenant, coll.id, list(rows))
            self._shared[key] = index
        return index

    # --- writes ---------------------------------------------------------------------------

    async def index_documents(
        self, tenant: str, name: str, documents: Sequence[Mapping[str, Any]],
        chunk_size: int = DEFAULT_CHUNK_WORDS, chunk_overlap: int = DEFAULT_OVERLAP_WORDS,
    ) -> dict[str, Any]:
        docs = _parse_documents(documents)
        async with self.ctx.db.tenant(tenant) as session:
            coll = await self._collection(session, name)
        pieces: list[tuple[DocInput, int, str]] = []
        vectors: list[np.ndarray] = []
        to_embed: list[int] = []
        for doc in docs:
            if doc.vector is not None:
                vectors.append(check_matrix(doc.vector, coll.dim, f"document {doc.doc_id!r} vector")[0])
                pieces.append((doc, 0, doc.text))
                continue
            for n, text in enumerate(chunk_text(doc.text, chunk_size, chunk_overlap)):
                to_embed.append(len(pieces))
                vectors.append(np.zeros(coll.dim, dtype=np.float32))
                pieces.append((doc, n, text))
        if to_embed:
            if not coll.embedder:
                raise InvalidArguments(
                    f"collection {name!r} has dimension {coll.dim} but no embedder of that dimension: give vectors"
                )
            texts = [pieces[i][2] for i in to_embed]
            embedded = await anyio.to_thread.run_sync(self.embedder(coll.embedder).embed, texts)
            for j, i in enumerate(to_embed):
                vectors[i] = embedded[j]
        key = (tenant, coll.id)
        async with self._lock(key):
            added, removed, version = await self._write_chunks(tenant, name, docs, pieces, vectors)
            if coll.backend in SHARED:
                await self._write_shared(tenant, coll, added, removed)
            live = self._live.get(key)
            if live is not None and live.version == version - 1:
                self._apply(live, tenant, coll.id, added, removed)
                live.version = version
            else:
                self._live.pop(key, None)
        return {"collection": name, "documents": len(docs), "chunks": len(added), "replaced_chunks": len(removed)}

    async def _write_chunks(
        self, tenant: str, name: str, docs: list[DocInput], pieces: list[tuple[DocInput, int, str]],
        vectors: list[np.ndarray],
    ) -> tuple[list[SearchChunk], list[int], int]:
        async with self.ctx.db.tenant(tenant) as session:
            coll = await self._locked_collection(session, name)
            doc_ids = [d.doc_id for d in docs]
            removed = list((await session.execute(
                select(col(SearchChunk.vid)).where(col(SearchChunk.collection_id) == coll.id, col(SearchChunk.doc_id).in_(doc_ids))
            )).scalars().all())
            if removed:
                await session.execute(
                    delete(SearchChunk).where(col(SearchChunk.collection_id) == coll.id, col(SearchChunk.doc_id).in_(doc_ids))
                )
            added: list[SearchChunk] = []
            for (doc, n, text), vec in zip(pieces, vectors, strict=True):
                added.append(SearchChunk(
                    tenant_id=tenant, collection_id=coll.id, doc_id=doc.doc_id, chunk=n, vid=coll.next_vid + len(added), text=text,
                    meta=doc.meta, tags=list(doc.tags), vector=np.asarray(vec, dtype=np.float32).tobytes(),
                ))
            session.add_all(added)
            coll.next_vid += len(added)
            coll.version += 1
            session.add(coll)
            return added, removed, coll.version

    async def _locked_collection(self, session: AsyncSession, name: str) -> SearchCollection:
        stmt = select(SearchCollection).where(col(SearchCollection.name) == name)
        if self.ctx.db.is_postgres:
            stmt = stmt.with_for_update()  # serialise writers across replicas: vids stay unique
        row = (await session.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no collection named {name!r}")
        return row

    async def _write_shared(self, tenant: str, coll: SearchCollection, added: list[SearchChunk], removed: list[int]) -> None:
        """Vectors of a shared (pgvector) collection, written whatever this process's live state."""
        index = await self._shared_index(tenant, coll, None)
        if removed:
            await anyio.to_thread.run_sync(index.remove, removed)
        if added:
            await anyio.to_thread.run_sync(_upsert, index, tenant, coll.id, added)

    def _apply(self, live: LiveIndex, tenant: str, coll_id: str, added: list[SearchChunk], removed: list[int]) -> None:
        shared = getattr(live.index, "backend", "") in SHARED  # its vectors were written by _write_shared
        if removed:
            if not shared:
                live.index.remove(removed)
            for vid in removed:
                live.tags.pop(vid, None)
                live.texts.pop(vid, None)
        if added:
            if not shared:
                _upsert(live.index, tenant, coll_id, added)
            for c in added:
                live.tags[c.vid] = tuple(c.tags)
                live.texts[c.vid] = c.text
        live.bm25 = None  # rebuilt lazily on the next text query

    async def delete_documents(self, tenant: str, name: str, doc_ids: Sequence[str]) -> dict[str, Any]:
        if not doc_ids or not all(isinstance(d, str) for d in doc_ids):
            raise InvalidArguments("ids must be a non-empty list of document id strings")
        async with self.ctx.db.tenant(tenant) as session:
            coll = await self._collection(session, name)
        key = (tenant, coll.id)
        async with self._lock(key):
            async with self.ctx.db.tenant(tenant) as session:
                coll = await self._locked_collection(session, name)
                where = (col(SearchChunk.collection_id) == coll.id, col(SearchChunk.doc_id).in_(list(doc_ids)))
                rows = (await session.execute(select(col(SearchChunk.vid), col(SearchChunk.doc_id)).where(*where))).all()
                if rows:
                    await session.execute(delete(SearchChunk).where(*where))
                    coll.version += 1
                    session.add(coll)
                version = coll.version
            if rows and coll.backend in SHARED:
                await self._write_shared(tenant, coll, [], [int(r[0]) for r in rows])
            live = self._live.get(key)
            if rows and live is not None and live.version == version - 1:
                self._apply(live, tenant, coll.id, [], [int(r[0]) for r in rows])
                live.version = version
            elif rows:
                self._live.pop(key, None)
        return {"collection": name, "deleted_documents": len({r[1] for r in rows}), "deleted_chunks": len(rows)}

    # --- reads ----------------------------------------------------------------------------

    async def live(self, tenant: str, coll: SearchCollection) -> LiveIndex:
        """The collection's index at its current version (built from the database if needed)."""
        key = (tenant, coll.id)
        live = self._live.get(key)
        if live is not None and live.version == coll.version:
            return live
        async with self._lock(key):
            live = self._live.get(key)
            if live is not None and live.version == coll.version:
                return live
            async with self.ctx.db.tenant(tenant) as session:
                fresh = await self._collection(session, coll.name)
                rows = (await session.execute(
                    select(SearchChunk).where(SearchChunk.collection_id == coll.id).order_by(SearchChunk.vid)  # type: ignore[arg-type]
                )).scalars().all()
            if coll.backend in SHARED:  # vectors are in PostgreSQL already: reload texts and tags only
                index = await self._shared_index(tenant, fresh, rows)
            else:
                workdir = self.root / tenant / coll.id
                shutil.rmtree(workdir, ignore_errors=True)
                index = make_index(coll.backend, coll.dim, coll.metric, **_index_params(coll.backend, coll.params, workdir))
            live = LiveIndex(version=fresh.version, index=index)
            self._apply(live, tenant, coll.id, list(rows), [])
            self._live[key] = live
            return live

    async def search(
        self, tenant: str, name: str, query: str | None, vector: list[float] | None, k: int,
        filter: Mapping[str, Any] | None, mode: str | None,
    ) -> dict[str, Any]:
        if not 1 <= k <= 1000:
            raise InvalidArguments(f"k must be in 1..1000, got {k}")
        if (query is None) == (vector is None):
            raise InvalidArguments("give exactly one of query (text) or vector")
        mode = mode or ("hybrid" if query is not None else "vector")
        if mode not in ("vector", "bm25", "hybrid"):
            raise InvalidArguments(f"mode {mode!r} is not supported; use vector, bm25 or hybrid")
        if vector is not None and mode != "vector":
            raise InvalidArguments(f"mode {mode!r} needs a text query; a vector query is mode 'vector'")
        user = Filter.from_dict(filter) or Filter()
        if user.tenant is not None or user.collection is not None:
            raise InvalidArguments("filter may only name tags_all / tags_any (tenant and collection are implied)")
        async with self.ctx.db.tenant(tenant) as session:
            coll = await self._collection(session, name)
        live = await self.live(tenant, coll)
        flt = Filter(tenant=tenant, collection=coll.id, tags_all=user.tags_all, tags_any=user.tags_any)
        fetch = k if mode == "vector" else max(4 * k, 50)
        ranked: list[list[tuple[int, float]]] = []
        if mode in ("vector", "hybrid"):
            if vector is not None:
                qvec = check_matrix(vector, coll.dim, "vector")[0]
            else:
                if not coll.embedder:
                    raise InvalidArguments(f"collection {name!r} has no embedder: search it with a vector")
                qvec = (await anyio.to_thread.run_sync(self.embedder(coll.embedder).embed, [str(query)]))[0]
            # Scores are "larger = better" in every mode: similarity for cos/ip, -distance for l2.
            if coll.backend in SHARED:  # a database round trip: off the event loop
                hits = await anyio.to_thread.run_sync(live.index.search, qvec, fetch, flt)
            else:
                hits = live.index.search(qvec, fetch, flt)
            ranked.append([(vid, -d if coll.metric == "l2" else 1.0 - d) for vid, d in hits])
        if mode in ("bm25", "hybrid"):
            if live.bm25 is None:
                live.bm25 = Bm25Side(live.texts, live.tags)
            # The BM25 side is already per tenant and collection: only the tag part applies here.
            ranked.append(live.bm25.search(str(query), fetch, user.tags_all, user.tags_any))
        hits = ranked[0][:k] if len(ranked) == 1 else fuse(ranked, k)
        return {"collection": name, "mode": mode, "results": await self._rows(tenant, coll.id, hits)}

    async def _rows(self, tenant: str, coll_id: str, hits: list[tuple[int, float]]) -> list[dict[str, Any]]:
        if not hits:
            return []
        async with self.ctx.db.tenant(tenant) as session:
            rows = (await session.execute(
                select(SearchChunk).where(col(SearchChunk.collection_id) == coll_id, col(SearchChunk.vid).in_([h[0] for h in hits]))
            )).scalars().all()
        by_vid = {r.vid: r for r in rows}
        return [
            {"id": r.doc_id, "chunk": r.chunk, "score": round(score, 6), "text": r.text, "metadata": r.meta,
             "tags": r.tags}
            for vid, score in hits if (r := by_vid.get(vid)) is not None
        ]

    async def stats(self, tenant: str, name: str) -> dict[str, Any]:
        async with self.ctx.db.tenant(tenant) as session:
            coll = await self._collection(session, name)
            docs, chunks = (await session.execute(
                select(func.count(func.distinct(col(SearchChunk.doc_id))), func.count()).where(col(SearchChunk.collection_id) == coll.id)
            )).one()
        live = await self.live(tenant, coll)
        return {**_describe(coll), "documents": int(docs), "chunks": int(chunks), "index": live.index.stats()}


def _describe(row: SearchCollection) -> dict[str, Any]:
    return {
        "name": row.name, "dimension": row.dim, "metric": row.metric, "backend": row.backend,
        "embedder": row.embedder or None, "params": row.params, "version": row.version,
    }


def _upsert(index: VectorIndex, tenant: str, coll_id: str, rows: Sequence[SearchChunk]) -> None:
    if not rows:
        return
    vids = np.asarray([c.vid for c in rows], dtype=np.int64)
    mat = np.vstack([np.frombuffer(c.vector, dtype=np.float32) for c in rows])
    index.upsert(vids, mat, [{"tenant": tenant, "collection": coll_id, "tags": list(c.tags)} for c in rows])


def _index_params(backend: str, params: Mapping[str, Any], workdir: Path | None) -> dict[str, Any]:
    out = dict(params)
    if backend == "pq":
        out["path"] = workdir  # None: a temporary directory (used only to validate)
    return out


def _parse_documents(documents: Sequence[Mapping[str, Any]]) -> list[DocInput]:
    if not documents:
        raise InvalidArguments("documents must be a non-empty list")
    if len(documents) > MAX_DOCS_PER_CALL:
        raise InvalidArguments(f"at most {MAX_DOCS_PER_CALL} documents per call, got {len(documents)}")
    out: list[DocInput] = []
    seen: set[str] = set()
    for i, doc in enumerate(documents):
        where = f"documents[{i}]"
        if not isinstance(doc, Mapping):
            raise InvalidArguments(f"{where} must be an object")
        doc_id, text, vector = doc.get("id"), doc.get("text", ""), doc.get("vector")
        if not isinstance(doc_id, str) or not doc_id or len(doc_id) > 512:
            raise InvalidArguments(f"{where}.id must be a non-empty string of at most 512 characters")
        if doc_id in seen:
            raise InvalidArguments(f"{where}.id {doc_id!r} appears twice in this call")
        seen.add(doc_id)
        if not isinstance(text, str):
            raise InvalidArguments(f"{where}.text must be a string")
        if vector is None and not text.strip():
            raise InvalidArguments(f"{where} needs a non-empty text or a vector")
        meta = doc.get("metadata") or {}
        if not isinstance(meta, Mapping):
            raise InvalidArguments(f"{where}.metadata must be an object")
        tags = doc.get("tags") or []
        if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
            raise InvalidArguments(f"{where}.tags must be a list of strings")
        out.append(DocInput(doc_id, text, vector, dict(meta), tuple(tags)))
    return out
