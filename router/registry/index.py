"""The tool registry: a catalog of every upstream tool and hybrid search over it.

``replace_server`` installs a server's current tool list (at start, on ``list_changed``),
``set_available`` flips a server's tools on/off when its upstream goes down or comes back, and
``search`` ranks tools for a natural-language query by

* BM25 over the tool name (split on camelCase/snake_case), title, description and parameter
  names/descriptions, with field weights (router/registry/bm25.py, router/registry/tool_text.py);
* cosine similarity of the query's and the tool's embedding (vsm_mcp.embeddings);
* fusion of the two: a weighted sum of min-max normalised scores (default) or reciprocal rank
  fusion — both measured by ``vsm-mcp bench retrieval``, see docs/ARCHITECTURE.md;
* in hybrid mode, a second stage (router/registry/ranker.py) over the best ``POOL`` tools:
  a fitted linear model turns their evidence into the probability that each is the tool asked
  for, next to the probability that no tool is — ``query`` reports ``no_match`` when the best
  tool is not clearly likelier than no tool (a margin under the fitted threshold). Query terms are normalised with the
  lexicon (router/registry/lexicon.toml) before BM25 sees them.

Filters (server, tags, availability) and the caller's grants (``allowed``) are applied inside
the search: a tool the caller may not call is never returned. Each change builds a new
immutable snapshot and swaps it in, so searches never see a half-updated index and need no lock.
Embeddings are looked up by content hash in an ``EmbeddingStore`` before the model is run.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from router.registry.bm25 import BM25Index, FieldCounts, field_counts
from router.registry.embedding_store import EmbeddingStore, MemoryEmbeddingStore, content_key
from router.registry.lexicon import Lexicon, default_lexicon
from router.registry.ranker import POOL, QueryEvidence, Ranker, default_ranker
from router.registry.tool_text import embedding_text, field_tokens, plural_stems, tokenize
from router.registry.vector_scan import Int8Scan, int8_scan_available
from vsm_mcp.embeddings import Embedder, blas_limit
from vsm_mcp.errors import InvalidArguments

Vector = npt.NDArray[np.float32]
Mode = Literal["hybrid", "bm25", "embedding"]
Fusion = Literal["weighted", "rrf"]
MODES: tuple[str, ...] = ("hybrid", "bm25", "embedding")

# General choices measured on the dev set (docs/ARCHITECTURE.md "Tool search"), not per query.
# "upstream" (the server's own description) cannot be measured on the dev set, which has none:
# half a description's weight, as it speaks for every tool of the server at once.
FIELD_WEIGHTS: Mapping[str, float] = {
    "name": 3.0, "title": 2.0, "description": 1.0, "params": 0.5, "server": 1.0, "upstream": 0.5,
}
# Weighted fusion: share of the embedding score. 0.6 once the server id is in the embedded text:
# held-out MRR up in 4 of 5 leave-servers-out folds, recall@5 down in none (benchmarks/RESULTS.md).
EMBED_WEIGHT = 0.6
LEXICON_WEIGHT = 0.3  # BM25 query weight of the words a lexicon group adds (router/registry/lexicon.toml)
RRF_K = 60.0
BM25_K1 = 1.2
BM25_B = 0.75
BM25_PER_FIELD = False
EMBED_BATCH = 256
# From this many tools, weighted hybrid search scans 8-bit codes of the vectors and re-scores
# the few that can rank first with the float32 ones (router/registry/vector_scan.py, _reranked_scores):
# below it the exact matvec is already about as cheap as the bookkeeping.
SCAN_MIN_TOOLS = 2048
# A task said in words is short; the encoder reads 256 tokens at most, and reading a query (the
# lexicon's patterns) costs ~3 µs per character, on the caller's event loop.
MAX_QUERY_CHARS = 4096
RERANK_POOL = 256  # fewer eligible tools than 4x this (filters): the exact scan


@dataclass(frozen=True)
class ToolRecord:
    """One tool of one upstream server as the registry knows it."""

    server: str
    name: str
    public_name: str
    title: str = ""
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    annotations: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    available: bool = True
    schema_hash: str = ""
    server_text: str = ""  # the upstream's own description and instructions (initialize answer)

    def __post_init__(self) -> None:
        if not self.schema_hash:
            object.__setattr__(self, "schema_hash", schema_hash(self.input_schema))

    @cached_property
    def embedding_text(self) -> str:
        """The text this tool is embedded as (its vector's store key derives from it)."""
        return embedding_text(
            self.name, self.title, self.description, self.input_schema, server=self.server, server_text=self.server_text
        )


def record_from_tool(
    server: str,
    tool: Any,
    public_name: str,
    *,
    tags: Sequence[str] = (),
    available: bool = True,
    server_text: str = "",
) -> ToolRecord:
    """A ``ToolRecord`` from an upstream's ``tools/list`` entry (an ``mcp.types.Tool`` or its JSON).

    The one conversion used for live upstream tools and for benchmark files alike;
    ``server_text`` is what the upstream says about itself (its initialize instructions).
    """
    data: Mapping[str, Any] = tool if isinstance(tool, Mapping) else tool.model_dump(by_alias=True, exclude_none=True)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidArguments(f"a tool of server {server!r} has no name")
    schema = data.get("inputSchema", data.get("input_schema")) or {"type": "object", "properties": {}}
    if not isinstance(schema, Mapping):
        raise InvalidArguments(f"tool {server}/{name}: input schema must be an object")
    annotations = data.get("annotations") or {}
    title = data.get("title") or (annotations.get("title") if isinstance(annotations, Mapping) else None) or ""
    return ToolRecord(
        server=server,
        name=name,
        public_name=public_name,
        title=str(title),
        description=str(data.get("description") or ""),
        input_schema=dict(schema),
        annotations=dict(annotations) if isinstance(annotations, Mapping) else {},
        tags=tuple(tags),
        available=available,
        server_text=server_text,
    )


@dataclass(frozen=True)
class SearchHit:
    record: ToolRecord
    score: float


@dataclass(frozen=True)
class SearchResult:
    """Ranked hits and whether any of them answers the query.

    In hybrid mode each score is the probability that the tool is the one asked for (the
    ranker's, calibrated on held-out servers), ``none_probability`` that no tool is, and
    ``no_match`` says the best tool is not clearly likelier than no tool — the hits are still the
    nearest tools. In bm25 / embedding mode, or without a ranker, scores are the raw fused
    ones and ``no_match`` is False unless nothing is eligible.
    """

    hits: list[SearchHit]
    no_match: bool = False
    none_probability: float | None = None
    # The optional model rerank (router/rerank.py): whether the order is the model's, and what
    # the stage did (None = not configured).
    reranked: bool = False
    rerank: Rerank | None = None


@dataclass(frozen=True)
class Rerank:
    """What the rerank stage did: ``status`` is reranked | none | skipped | denied | timeout |
    failed | unparsed; ``cache`` the LLM-CDN's answer source (hit, miss, …) when a model answered;
    ``ms`` the time the stage waited for it."""

    status: str
    cache: str | None = None
    ms: float = 0.0


def schema_hash(schema: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of an input schema."""
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class _Snapshot:
    """Immutable index over a fixed list of records."""

    records: tuple[ToolRecord, ...]
    vectors: Vector
    bm25: BM25Index
    available: npt.NDArray[np.bool_]
    by_server: dict[str, npt.NDArray[np.intp]]
    by_tag: dict[str, npt.NDArray[np.intp]]
    by_public: dict[str, int]
    name_stems: tuple[frozenset[str], ...]  # per record: the stems of its name (ranker evidence)
    name_actions: tuple[frozenset[str], ...]  # per record: the lexicon actions its name says
    server_stems: tuple[frozenset[str], ...]  # per record: the stems of its server id
    name_number: tuple[dict[str, bool], ...]  # per record: its name's stems, each plural or not
    scan: Int8Scan | None = None


class _Reading(NamedTuple):
    """What the text of one query says, as search uses it (``ToolRegistry._analysed``)."""

    terms: dict[str, float]  # BM25 query terms and their weights
    related: dict[str, frozenset[str]]  # each own stem and its lexicon relatives
    actions: frozenset[str]  # the query's action(s)
    number: dict[str, bool]  # each own stem: said in the plural?


def _doc_key(rec: ToolRecord) -> tuple[str, str, str, str, str, str]:
    return (rec.server, rec.name, rec.title, rec.description, rec.schema_hash, rec.server_text)


def _tag_keys(tag: str) -> set[str]:
    return {tag, tag.split(":", 1)[0]}


def _minmax(x: Vector, mask: npt.NDArray[np.bool_]) -> Vector:
    if not mask.any():
        return np.zeros_like(x)
    lo, hi = float(x[mask].min()), float(x[mask].max())
    if hi - lo < 1e-9:
        return np.where(mask, np.float32(1.0 if hi > 0 else 0.0), np.float32(0.0)).astype(np.float32)
    out: Vector = ((x - lo) / (hi - lo)).astype(np.float32, copy=False)
    return out


def _ranked(scores: Vector, pool: int) -> npt.NDArray[np.intp]:
    """Indices of the ``pool`` highest scores, best first, ties broken by index (deterministic)."""
    if pool <= 0:
        return np.empty(0, dtype=np.intp)
    part = np.argpartition(-scores, pool - 1)[:pool] if pool < len(scores) else np.arange(len(scores))
    out: npt.NDArray[np.intp] = part[np.lexsort((part, -scores[part]))]
    return out


def _rrf(x: Vector, mask: npt.NDArray[np.bool_], k: float, positive_only: bool) -> Vector:
    valid = mask & (x > 0) if positive_only else mask
    idx = np.flatnonzero(valid)
    out = np.zeros_like(x)
    order = idx[np.argsort(-x[idx], kind="stable")]
    out[order] = 1.0 / (k + np.arange(1, len(order) + 1, dtype=np.float32))
    return out


def check_query(query: str) -> None:
    """InvalidArguments for a query search cannot take: empty, or longer than ``MAX_QUERY_CHARS``."""
    if not query.strip():
        raise InvalidArguments("query must not be empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidArguments(
            f"query is {len(query):,} characters; tool search takes at most {MAX_QUERY_CHARS:,} "
            "(say in a sentence or two what you want to do)"
        )


def _check(query: str, limit: int, mode: str) -> None:
    if mode not in MODES:
        raise InvalidArguments(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidArguments("limit must be a positive integer")
    check_query(query)


def fuse(
    bm: Vector, emb: Vector, mask: npt.NDArray[np.bool_], fusion: Fusion, *, embed_weight: float, rrf_k: float
) -> Vector:
    """Hybrid score of every tool from its BM25 and cosine scores (-inf outside ``mask``)."""
    if fusion == "rrf":
        fused = _rrf(bm, mask, rrf_k, positive_only=True) + _rrf(emb, mask, rrf_k, positive_only=False)
    else:
        w = np.float32(embed_weight)
        fused = w * _minmax(emb, mask) + (np.float32(1.0) - w) * _minmax(bm, mask)
    return np.where(mask, fused, np.float32(-np.inf)).astype(np.float32)


class ToolRegistry:
    """Catalog + hybrid search. Thread-safe: writers serialise on a lock, readers use snapshots."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        store: EmbeddingStore | None = None,
        fusion: Fusion = "weighted",
        embed_weight: float = EMBED_WEIGHT,
        lexicon_weight: float = LEXICON_WEIGHT,
        lexicon: Lexicon | None = None,
        ranker: Ranker | None | Literal["default"] = "default",
        field_weights: Mapping[str, float] = FIELD_WEIGHTS,
        bm25_k1: float = BM25_K1,
        bm25_b: float = BM25_B,
        bm25_per_field: bool = BM25_PER_FIELD,
        rrf_k: float = RRF_K,
        query_cache_size: int = 2048,
        scan_min_tools: int = SCAN_MIN_TOOLS,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.embedder = embedder
        self.store: EmbeddingStore = store if store is not None else MemoryEmbeddingStore()
        self.fusion: Fusion = fusion
        self.embed_weight = embed_weight
        self.lexicon_weight = lexicon_weight
        self.lexicon = lexicon if lexicon is not None else default_lexicon()
        # None: first stage only (the fused score ranks, never a no-match) — for comparisons.
        self.ranker: Ranker | None = default_ranker() if ranker == "default" else ranker
        self.field_weights = dict(field_weights)
        self.bm25_k1, self.bm25_b, self.bm25_per_field = bm25_k1, bm25_b, bm25_per_field
        self.rrf_k = rrf_k
        self.scan_min_tools = scan_min_tools
        self.progress = progress
        self._servers: dict[str, tuple[ToolRecord, ...]] = {}
        self._vectors: dict[str, Vector] = {}  # content key → vector, for records in the catalog
        self._docs: dict[tuple[str, str, str, str, str, str], FieldCounts] = {}
        self._write_lock = threading.Lock()
        self._snapshot = self._build(())
        self._query_cache: OrderedDict[str, Vector] = OrderedDict()
        self._analysis: OrderedDict[str, _Reading] = OrderedDict()
        self._query_cache_size = query_cache_size
        self._query_lock = threading.Lock()
        self.embedded_count = 0  # texts sent to the embedder (tools and queries)

    # --- catalog ---------------------------------------------------------------------------

    def replace_server(self, server: str, records: Iterable[ToolRecord]) -> None:
        """Install ``server``'s complete tool list (tools absent from it disappear)."""
        self.replace_servers({server: tuple(records)})

    def replace_servers(self, changes: Mapping[str, Iterable[ToolRecord]]) -> None:
        """Install several servers' tool lists with one index rebuild; an empty list removes a server."""
        lists = {server: tuple(records) for server, records in changes.items()}
        for server, items in lists.items():
            for rec in items:
                if rec.server != server:
                    raise InvalidArguments(f"record {rec.public_name!r} belongs to {rec.server!r}, not {server!r}")
        with self._write_lock:
            self._ensure_vectors([r for items in lists.values() for r in items])
            for server, items in lists.items():
                if items:
                    self._servers[server] = items
                else:
                    self._servers.pop(server, None)
            self._rebuild()

    def has_vectors(self, records: Iterable[ToolRecord]) -> bool:
        """True when every record's embedding is already in memory (installing it needs no model run)."""
        name = self.embedder.name
        return all(content_key(name, self._embed_text(r)) in self._vectors for r in records)

    def remove_server(self, server: str) -> None:
        with self._write_lock:
            if self._servers.pop(server, None) is not None:
                self._rebuild()

    def set_available(self, server: str, available: bool) -> None:
        """Mark every tool of ``server`` (un)available; unavailable tools are never returned."""
        with self._write_lock:
            items = self._servers.get(server)
            if items is None or all(r.available == available for r in items):
                return
            self._servers[server] = tuple(replace(r, available=available) for r in items)
            self._rebuild()

    def records(self, server: str | None = None) -> list[ToolRecord]:
        snap = self._snapshot
        return [r for r in snap.records if server is None or r.server == server]

    def servers(self) -> list[str]:
        return sorted(self._servers)

    def get(self, public_name: str) -> ToolRecord | None:
        snap = self._snapshot
        i = snap.by_public.get(public_name)
        return snap.records[i] if i is not None else None

    def __len__(self) -> int:
        return len(self._snapshot.records)

    # --- search ----------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        limit: int = 5,
        server: str | None = None,
        tags: Sequence[str] | None = None,
        allowed: Callable[[ToolRecord], bool] | None = None,
        mode: Mode = "hybrid",
        fusion: Fusion | None = None,
    ) -> list[SearchHit]:
        """The ``limit`` best tools for ``query`` that pass the filters and ``allowed``
        (``query`` also says whether any of them answers it)."""
        return self.query(query, limit=limit, server=server, tags=tags, allowed=allowed, mode=mode, fusion=fusion).hits

    def query(
        self,
        query: str,
        *,
        limit: int = 5,
        server: str | None = None,
        tags: Sequence[str] | None = None,
        allowed: Callable[[ToolRecord], bool] | None = None,
        mode: Mode = "hybrid",
        fusion: Fusion | None = None,
    ) -> SearchResult:
        """``search`` with the verdict: calibrated scores and ``no_match`` (hybrid, weighted fusion)."""
        _check(query, limit, mode)
        fusion = fusion or self.fusion
        if mode != "hybrid" or fusion != "weighted" or self.ranker is None:
            hits, _ = self._first_stage(query, limit, server, tags, allowed, mode, fusion, evidence=False)
            return SearchResult(hits, no_match=not hits)
        hits, ev = self._first_stage(query, max(limit, POOL), server, tags, allowed, mode, fusion, evidence=True)
        if ev is None:
            return SearchResult([], no_match=True)
        order, p, p_none = self.ranker.order(ev)
        # Tools past the pool were never scored by the model: their probability is taken as 0.
        ranked = [SearchHit(hits[i].record, float(p[i])) for i in order]
        ranked += [SearchHit(h.record, 0.0) for h in hits[len(order) : limit]]
        return SearchResult(ranked[:limit], self.ranker.no_match(float(p.max()), p_none), float(p_none))

    def candidates(
        self,
        query: str,
        *,
        limit: int,
        server: str | None = None,
        tags: Sequence[str] | None = None,
        allowed: Callable[[ToolRecord], bool] | None = None,
    ) -> tuple[list[SearchHit], QueryEvidence | None]:
        """The first stage's ranking (hybrid, weighted fusion) and the ranker's evidence for its
        first ``POOL`` tools — what ``query`` reorders; the cross-validation fits on it."""
        _check(query, limit, "hybrid")
        return self._first_stage(query, limit, server, tags, allowed, "hybrid", "weighted", evidence=True)

    def _first_stage(
        self,
        query: str,
        limit: int,
        server: str | None,
        tags: Sequence[str] | None,
        allowed: Callable[[ToolRecord], bool] | None,
        mode: Mode,
        fusion: Fusion,
        *,
        evidence: bool,
    ) -> tuple[list[SearchHit], QueryEvidence | None]:
        snap = self._snapshot
        mask = self._mask(snap, server, tags)
        if not mask.any():
            return [], None
        bm = snap.bm25.scores(self._query_terms(query)) if mode != "embedding" else None
        top: list[int] | None = None
        max_cos: float | None = None
        if mode == "hybrid" and fusion == "weighted" and snap.scan is not None:
            assert bm is not None
            reranked = self._reranked_scores(snap, query, mask, limit * 4 + 16, bm)
            if reranked is not None:
                scores, max_cos = reranked
                top = self._top(snap, scores, mask, limit, allowed)
                if len(top) < limit:
                    top = None  # grants or a large limit used up the pool: rank every tool exactly
        if top is None:
            scores, max_cos = self._scores(snap, query, mask, mode, fusion, bm)
            top = self._top(snap, scores, mask, limit, allowed)
        hits = [SearchHit(snap.records[i], float(scores[i])) for i in top]
        if not evidence or not top:
            return hits, None
        assert bm is not None and max_cos is not None
        return hits, self._evidence(snap, query, np.asarray(top[:POOL], dtype=np.intp), scores, bm, mask, max_cos)

    def _evidence(
        self,
        snap: _Snapshot,
        query: str,
        idx: npt.NDArray[np.intp],
        fused: Vector,
        bm: Vector,
        mask: npt.NDArray[np.bool_],
        max_cos: float,
    ) -> QueryEvidence:
        """The ranker's view of the candidates ``idx`` (router/registry/ranker.py)."""
        terms = self._query_terms(query)
        own, actions = self._query_words(query)
        cos = snap.vectors[idx] @ self.embed_query(query)  # 32 rows: no BLAS threads to limit
        cover = np.empty(len(idx))
        action = np.zeros(len(idx))
        named = np.zeros(len(idx))
        number = np.zeros(len(idx))
        query_number = self._analysed(query).number
        for j, i in enumerate(idx):
            stems = snap.name_stems[i]
            cover[j] = sum(terms.get(t, 0.0) for t in stems) / max(len(stems), 1)
            tool_actions = snap.name_actions[i]
            if actions and tool_actions:
                action[j] = 1.0 if actions & tool_actions else -1.0
            named[j] = 1.0 if not snap.server_stems[i].isdisjoint(own) else 0.0
            agree = [1.0 if query_number[w] == plural else -1.0 for w, plural in snap.name_number[i].items() if w in query_number]
            number[j] = sum(agree) / len(agree) if agree else 0.0
        # A query word the catalog never uses still counts as known when a word of its lexicon
        # group occurs ("remember" for a catalog that says "assert"): the lexicon bridges it.
        known = sum(1 for related in own.values() if any(r in snap.bm25 for r in related)) / max(len(own), 1)
        # A product or place the catalog never mentions ("on Slack", "to YouTube") is the
        # strongest sign that no tool here does the task.
        unknown_name = 0.0
        for name in self.lexicon.proper_names(query):
            stems = tokenize(name)
            if stems and not any(r in snap.bm25 for t in stems for r in self.lexicon.related(t)):
                unknown_name = 1.0
                break
        return QueryEvidence(
            cos=cos.astype(np.float64),
            bm25=bm[idx].astype(np.float64),
            name_cover=cover,
            action=action,
            server_named=named,
            fused=fused[idx].astype(np.float64),
            max_cos=max_cos,
            max_bm25=float(bm.max(where=mask, initial=0.0)),
            known_terms=known,
            unknown_name=unknown_name,
            number=number,
        )

    def embed_query(self, query: str) -> Vector:
        """The query's embedding, from an LRU cache when it was asked before."""
        check_query(query)
        with self._query_lock:
            cached = self._query_cache.get(query)
            if cached is not None:
                self._query_cache.move_to_end(query)
                return cached
        vec: Vector = self.embedder.embed([self._embed_input(query)])[0]
        with self._query_lock:
            self.embedded_count += 1
            self._query_cache[query] = vec
            while len(self._query_cache) > self._query_cache_size:
                self._query_cache.popitem(last=False)
        return vec

    def _embed_input(self, query: str) -> str:
        """What ``query`` is embedded as: the things it names by shape replaced by their type
        ("what's inside a file"), its action's gloss added (router/registry/lexicon.py)."""
        return self.lexicon.embed_text(query)

    def has_query(self, query: str) -> bool:
        """True when ``query``'s embedding is cached (searching it runs no model)."""
        return query in self._query_cache

    def clear_query_cache(self) -> None:
        with self._query_lock:
            self._query_cache.clear()

    def _mask(self, snap: _Snapshot, server: str | None, tags: Sequence[str] | None) -> npt.NDArray[np.bool_]:
        mask = snap.available.copy()
        if server is not None:
            keep = np.zeros_like(mask)
            keep[snap.by_server.get(server, np.empty(0, dtype=np.intp))] = True
            mask &= keep
        for tag in tags or ():
            keep = np.zeros_like(mask)
            keep[snap.by_tag.get(tag, np.empty(0, dtype=np.intp))] = True
            mask &= keep
        return mask

    def _scores(
        self, snap: _Snapshot, query: str, mask: npt.NDArray[np.bool_], mode: Mode, fusion: Fusion, bm: Vector | None
    ) -> tuple[Vector, float | None]:
        """Every tool's score (-inf outside ``mask``) and the best eligible cosine (None in bm25 mode)."""
        neg = np.float32(-np.inf)
        if mode == "bm25":
            assert bm is not None
            return np.where(mask & (bm > 0), bm, neg).astype(np.float32), None
        query_vec = self.embed_query(query)
        with blas_limit(1):  # OpenBLAS's thread pool made this 10k-row matvec ~100x slower on busy cores
            emb = snap.vectors @ query_vec
        max_cos = float(emb.max(where=mask, initial=-1.0))
        if mode == "embedding":
            return np.where(mask, emb, neg).astype(np.float32), max_cos
        assert bm is not None
        return fuse(bm, emb, mask, fusion, embed_weight=self.embed_weight, rrf_k=self.rrf_k), max_cos

    def _reranked_scores(
        self, snap: _Snapshot, query: str, mask: npt.NDArray[np.bool_], need: int, bm_raw: Vector
    ) -> tuple[Vector, float] | None:
        """``fuse``'s weighted scores of the best tools, exactly; -inf for every other tool; and
        the best eligible cosine (exact: the range's top end).

        The 8-bit scan gives every cosine within ±eps. The min-max range is taken from exact
        cosines of the tools the bound leaves at either end, then each tool's fused score is
        known within ±delta; every tool that could reach the top ``need`` (by an estimated
        threshold) is re-scored exactly, and only those that provably beat all the rest keep
        their score. None when the exact scan is as cheap (few eligible tools) or the range is
        degenerate; the caller then scores everything exactly.
        """
        assert snap.scan is not None
        if np.count_nonzero(mask) <= 4 * RERANK_POOL:
            return None
        q = self.embed_query(query)
        approx, eps = snap.scan.cosines(q)
        top = np.flatnonzero(mask & (approx >= approx.max(where=mask, initial=-np.inf) - 2 * eps))
        low = np.flatnonzero(mask & (approx <= approx.min(where=mask, initial=np.inf) + 2 * eps))
        with blas_limit(1):
            hi, lo = float((snap.vectors[top] @ q).max()), float((snap.vectors[low] @ q).min())
        if hi - lo < 1e-9:
            return None
        w, one = np.float32(self.embed_weight), np.float32(1.0)
        bm = _minmax(bm_raw, mask)
        rough = np.where(mask, w * ((approx - lo) / np.float32(hi - lo)) + (one - w) * bm, np.float32(-np.inf))
        delta = float(w) * eps / (hi - lo) + 1e-6
        # The need-th best rough score, estimated from every 8th tool with room to spare: too
        # low costs exact re-scoring of more tools, too high only a fallback to the exact scan.
        sample = rough[::8]
        k = min(len(sample), max(1, 2 * need // 8))
        threshold = float(np.partition(sample, len(sample) - k)[len(sample) - k])
        if not np.isfinite(threshold):
            return None
        cand = np.flatnonzero(rough >= threshold - 2 * delta)
        if len(cand) > len(mask) // 4:
            return None
        with blas_limit(1):
            exact = snap.vectors[cand] @ q
        # The same float32 arithmetic as fuse(): equal scores, so equal order and tie-breaks.
        fused = w * ((exact - lo) / (hi - lo)).astype(np.float32, copy=False) + (one - w) * bm[cand]
        # A tool outside ``cand`` scores below threshold - delta: those above it are the true best.
        sure = fused >= threshold - delta
        out = np.full(len(mask), np.float32(-np.inf), dtype=np.float32)
        out[cand[sure]] = fused[sure]
        return out, hi

    @staticmethod
    def _top(
        snap: _Snapshot,
        scores: Vector,
        mask: npt.NDArray[np.bool_],
        limit: int,
        allowed: Callable[[ToolRecord], bool] | None,
    ) -> list[int]:
        """Indices of the ``limit`` best finite scores whose record ``allowed`` accepts."""
        finite = np.isfinite(scores)
        candidates = int(np.count_nonzero(finite))
        # Few finite scores (bm25 matches, a re-ranked pool): rank those alone, not every tool.
        subset = np.flatnonzero(finite) if candidates * 8 < len(scores) else None
        pool = min(candidates, limit * 4 + 16)
        while True:
            # Grants are checked lazily in rank order; rank everything only if too many are denied.
            top: list[int] = []
            order = _ranked(scores, pool) if subset is None else subset[_ranked(scores[subset], pool)]
            for i in order:
                if allowed is None or allowed(snap.records[int(i)]):
                    top.append(int(i))
                    if len(top) == limit:
                        return top
            if pool >= candidates:
                return top
            pool = candidates

    # --- text preparation (overridden by benchmarks/retrieval_cv.py to compare variants) ----

    def _query_terms(self, query: str) -> dict[str, float]:
        """The query's own stems (weight 1) and the lexicon's words for them (``lexicon_weight``)."""
        return self._analysed(query).terms

    def _query_words(self, query: str) -> tuple[dict[str, frozenset[str]], frozenset[str]]:
        """The query's own stems, each with its lexicon relatives, and the query's action(s)."""
        reading = self._analysed(query)
        return reading.related, reading.actions

    def _analysed(self, query: str) -> _Reading:
        # Memoised like the query's embedding: a repeated query costs no text processing.
        with self._query_lock:
            hit = self._analysis.get(query)
            if hit is not None:
                return hit
        # A literal's words ("db.yaml", "'npm run build'") weigh like lexicon words: they name
        # something, the rest of the query says what to do with it (router/registry/lexicon.py).
        intent = self.lexicon.intent(query)
        own = tokenize(intent)
        terms, actions = self.lexicon.expand(query, dict.fromkeys(own, 1.0), self.lexicon_weight)
        for t in tokenize(query):
            terms.setdefault(t, self.lexicon_weight)
        out = _Reading(terms, self.lexicon.related_in(intent, own), actions, plural_stems(intent))
        with self._query_lock:
            self._analysis[query] = out
            while len(self._analysis) > self._query_cache_size:
                self._analysis.popitem(last=False)
        return out

    def _fields(self, rec: ToolRecord) -> dict[str, list[str]]:
        return field_tokens(
            rec.name, rec.title, rec.description, rec.input_schema, rec.server, server_text=rec.server_text
        )

    def _embed_text(self, rec: ToolRecord) -> str:
        return rec.embedding_text

    # --- index building ------------------------------------------------------------------

    def _ensure_vectors(self, items: Sequence[ToolRecord]) -> None:
        """Have a vector for each record: from memory, then the store, then the embedder."""
        name = self.embedder.name
        texts = {content_key(name, t): t for t in (self._embed_text(r) for r in items)}
        missing = [k for k in texts if k not in self._vectors]
        self._vectors.update(self.store.get_many(missing))
        todo = [k for k in missing if k not in self._vectors]
        for start in range(0, len(todo), EMBED_BATCH):
            keys = todo[start : start + EMBED_BATCH]
            vecs = self.embedder.embed([texts[k] for k in keys])
            self.embedded_count += len(keys)
            fresh = {k: vecs[i] for i, k in enumerate(keys)}
            self.store.put_many(fresh)
            self._vectors.update(fresh)
            if self.progress is not None:
                self.progress(min(start + EMBED_BATCH, len(todo)), len(todo))

    def _doc(self, rec: ToolRecord) -> FieldCounts:
        key = _doc_key(rec)
        doc = self._docs.get(key)
        if doc is None:
            doc = self._docs[key] = field_counts(self._fields(rec))
        return doc

    def _rebuild(self) -> None:
        records = tuple(r for server in sorted(self._servers) for r in self._servers[server])
        self._snapshot = self._build(records)
        live = {content_key(self.embedder.name, self._embed_text(r)) for r in records}
        self._vectors = {k: v for k, v in self._vectors.items() if k in live}
        docs = {_doc_key(r) for r in records}
        self._docs = {k: v for k, v in self._docs.items() if k in docs}

    def _build(self, records: tuple[ToolRecord, ...]) -> _Snapshot:
        name = self.embedder.name
        if records:
            vectors = np.vstack([self._vectors[content_key(name, self._embed_text(r))] for r in records])
        else:
            vectors = np.zeros((0, 1), dtype=np.float32)
        by_server: dict[str, list[int]] = {}
        by_tag: dict[str, list[int]] = {}
        for i, rec in enumerate(records):
            by_server.setdefault(rec.server, []).append(i)
            for tag in rec.tags:
                for k in _tag_keys(tag):
                    by_tag.setdefault(k, []).append(i)
        scan = Int8Scan(vectors) if len(records) >= self.scan_min_tools and int8_scan_available() else None
        # Names repeat across servers mounted twice: analyse each distinct name once.
        stems = {n: frozenset(tokenize(n)) for n in {r.name for r in records}}
        acts = {n: self.lexicon.tool_actions(n) for n in stems}
        # A name that says no action takes its description's (analysed per record, as two
        # servers' same-named tools may be described differently).
        actions = tuple(acts[r.name] or self.lexicon.tool_actions(r.name, r.description) for r in records)
        server_stems = {s: frozenset(tokenize(s)) for s in by_server}
        numbers = {n: plural_stems(n) for n in stems}
        return _Snapshot(
            name_number=tuple(numbers[r.name] for r in records),
            name_stems=tuple(stems[r.name] for r in records),
            name_actions=actions,
            server_stems=tuple(server_stems[r.server] for r in records),
            scan=scan,
            records=records,
            vectors=np.ascontiguousarray(vectors, dtype=np.float32),
            bm25=BM25Index(
                [self._doc(r) for r in records],
                self.field_weights,
                k1=self.bm25_k1,
                b=self.bm25_b,
                per_field=self.bm25_per_field,
            ),
            available=np.array([r.available for r in records], dtype=np.bool_),
            by_server={k: np.asarray(sorted(set(v)), dtype=np.intp) for k, v in by_server.items()},
            by_tag={k: np.asarray(sorted(set(v)), dtype=np.intp) for k, v in by_tag.items()},
            by_public={r.public_name: i for i, r in enumerate(records)},
        )
