"""The default vector backend: a usearch HNSW graph.

Tuning (``make_index("usearch", dim, metric, connectivity=…, expansion_add=…, expansion_search=…)``):

* ``connectivity`` (HNSW *M*, default 16) — edges per node: more = better recall, more memory;
* ``expansion_add`` (*ef_construction*, default 128) — candidate list while inserting;
* ``expansion_search`` (*ef_search*, default 64) — candidate list while searching; can be changed
  on a live index (``index.expansion_search = 128``);
* ``dtype`` (default ``f32``; ``f16`` halves the memory of the stored vectors; ``i8`` quarters it
  but keeps only directions, so use it with ``cos``);
* ``exact_limit`` (default 2,048) — filtered searches whose allow-list is at most this long are
  answered exactly over the allow-list instead of through the graph.

``save(dir)`` writes ``index.usearch`` plus the metadata; ``UsearchIndex.load(dir)`` memory-maps
the graph (``view=True``, the default), so opening a large index is instant and its pages are
shared between processes. The first write to a viewed index loads it fully into RAM.

Filtered search: the Python binding of usearch has no predicate callback, so filtering is planned
from the filter's exact allow-list (``MetaTable.allowed``): a selective filter is answered by an
exact scan of the allowed vectors (cheaper than walking a graph that is mostly filtered out, and
exact); a broad filter walks the graph with a candidate budget of ``k / selectivity`` (×2),
doubled until ``k`` allowed hits are found, then falls back to the exact scan. Either way only
allowed ids are returned.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from usearch.compiled import ScalarKind
from usearch.index import Index

from vsm_mcp.errors import InvalidArguments
from vsm_mcp.vectors import Hit, Metric, check_ids, check_matrix, check_query, exact_distances
from vsm_mcp.vectors.filter import Filter, MetaTable

_METRIC = {"cos": "cos", "ip": "ip", "l2": "l2sq"}
_DTYPES = ("f32", "f16", "i8")


class UsearchIndex:
    """HNSW index with incremental upsert/remove, metadata filters and mmap persistence."""

    backend = "usearch"

    def __init__(
        self, dim: int, metric: Metric = "cos", *, connectivity: int = 16, expansion_add: int = 128,
        expansion_search: int = 64, dtype: str = "f32", exact_limit: int = 2048,
    ) -> None:
        if dtype not in _DTYPES:
            raise InvalidArguments(f"usearch dtype {dtype!r} is not supported; use one of {', '.join(_DTYPES)}")
        for name, value in (("connectivity", connectivity), ("expansion_add", expansion_add),
                            ("expansion_search", expansion_search)):
            if not isinstance(value, int) or not 2 <= value <= 4096:
                raise InvalidArguments(f"usearch {name} must be an integer in 2..4096, got {value!r}")
        self.dim = dim
        self.metric = metric
        self.dtype = dtype
        self.exact_limit = exact_limit
        self._index = Index(
            ndim=dim, metric=_METRIC[metric], dtype=dtype, connectivity=connectivity,
            expansion_add=expansion_add, expansion_search=expansion_search,
        )
        self._meta = MetaTable()
        self._view_path: Path | None = None

    def __len__(self) -> int:
        return len(self._meta)

    @property
    def expansion_search(self) -> int:
        return int(self._index.expansion_search)

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        self._index.expansion_search = int(value)  # type: ignore[misc]  # usearch stub lacks the setter

    # --- writes -------------------------------------------------------------------------

    def _writable(self) -> None:
        if self._view_path is not None:
            # A memory-mapped view is read-only: copy it into RAM before the first change.
            self._index.load(str(self._view_path / "index.usearch"))
            self._view_path = None

    def upsert(
        self, ids: Sequence[int] | npt.NDArray[Any], vectors: npt.ArrayLike,
        meta: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        mat = check_matrix(vectors, self.dim)
        keys = check_ids(ids, mat.shape[0])
        if keys.size == 0:
            return
        self._writable()
        existing = keys[self._meta.contains(keys)]
        self._meta.upsert(keys, meta)  # validates the metadata before the graph changes
        if existing.size:
            self._index.remove(existing.astype(np.uint64))
        self._index.add(keys.astype(np.uint64), mat)

    def remove(self, ids: Sequence[int] | npt.NDArray[Any]) -> int:
        keys = check_ids(ids)
        gone = self._meta.remove(keys)
        if gone.size:
            self._writable()
            self._index.remove(gone.astype(np.uint64))
        return int(gone.size)

    # --- search -------------------------------------------------------------------------

    def search(self, query: npt.ArrayLike, k: int, filter: Filter | None = None) -> list[Hit]:
        q = check_query(query, self.dim, k)
        allowed = self._meta.allowed(filter)
        if allowed is None:
            return self._graph(q[0], k)
        if allowed.size == 0:
            return []
        if allowed.size <= max(self.exact_limit, k):
            return self._exact(q[0], k, allowed)
        return self._graph_filtered(q[0], k, allowed)

    def _graph(self, q: npt.NDArray[np.float32], count: int) -> list[Hit]:
        matches = self._index.search(q, count, threads=1)  # one query: no thread-pool hand-off
        return [(int(key), float(d)) for key, d in zip(matches.keys, matches.distances, strict=True)]

    def _exact(self, q: npt.NDArray[np.float32], k: int, allowed: npt.NDArray[np.int64]) -> list[Hit]:
        # get_many + one concatenate: Index.get() casts key by key in Python (~40x slower).
        parts: list[Any] = list(self._index._compiled.get_many(allowed.astype(np.uint64), ScalarKind.F32))
        base = np.concatenate(parts).view(np.float32).reshape(allowed.size, self.dim)
        dist = exact_distances(base, q, self.metric)
        top = np.argsort(dist, kind="stable")[:k] if dist.size <= 4 * k else _top_k(dist, k)
        return [(int(allowed[i]), float(dist[i])) for i in top]

    def _graph_filtered(self, q: npt.NDArray[np.float32], k: int, allowed: npt.NDArray[np.int64]) -> list[Hit]:
        selectivity = allowed.size / max(len(self._index), 1)
        budget = min(len(self._index), math.ceil(2 * k / selectivity))
        allow = set(allowed.tolist()) if allowed.size < 200_000 else None
        for _ in range(4):  # doubling covers filters that are rarer near the query than overall
            hits = self._graph(q, budget)
            if allow is not None:
                kept = [h for h in hits if h[0] in allow]
            else:
                hit_ids = np.fromiter((h[0] for h in hits), dtype=np.int64, count=len(hits))
                ok = np.isin(hit_ids, allowed)
                kept = [h for h, good in zip(hits, ok, strict=True) if good]
            if len(kept) >= k or budget >= len(self._index):
                return kept[:k]
            budget = min(len(self._index), budget * 2)
        return self._exact(q, k, allowed)

    # --- persistence and stats ------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        self._index.save(str(directory / "index.usearch"))
        self._meta.save(directory)
        manifest = {
            "backend": self.backend, "dim": self.dim, "metric": self.metric, "dtype": self.dtype,
            "connectivity": int(self._index.connectivity), "expansion_add": int(self._index.expansion_add),
            "expansion_search": int(self._index.expansion_search), "exact_limit": self.exact_limit,
        }
        (directory / "manifest.json").write_text(json.dumps(manifest))

    @classmethod
    def load(cls, path: str | Path, *, view: bool = True, **overrides: Any) -> UsearchIndex:
        """Open a saved index; ``view=True`` memory-maps the graph instead of reading it."""
        directory = Path(path)
        manifest = json.loads((directory / "manifest.json").read_text())
        params = {k: manifest[k] for k in ("connectivity", "expansion_add", "expansion_search", "dtype",
                                          "exact_limit")}
        params.update(overrides)
        index = cls(int(manifest["dim"]), manifest["metric"], **params)
        file = str(directory / "index.usearch")
        if view:
            index._index.view(file)
            index._view_path = directory
        else:
            index._index.load(file)
        index._index.expansion_search = int(params["expansion_search"])  # type: ignore[misc]
        index._meta = MetaTable.load(directory)
        return index

    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "dim": self.dim, "metric": self.metric, "dtype": self.dtype,
            "count": len(self), "connectivity": int(self._index.connectivity),
            "expansion_add": int(self._index.expansion_add),
            "expansion_search": int(self._index.expansion_search),
            "memory_bytes": int(self._index.memory_usage), "memory_mapped": self._view_path is not None,
        }


def _top_k(dist: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.intp]:
    part = np.argpartition(dist, k - 1)[:k]
    order: npt.NDArray[np.intp] = part[np.argsort(dist[part], kind="stable")]
    return order
