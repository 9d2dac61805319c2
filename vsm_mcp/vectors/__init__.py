"""Vector indexes: one ``VectorIndex`` protocol, several backends, one factory.

Backends (``make_index(backend, dim, metric, **params)``):

* ``usearch`` (default) — HNSW graph in memory, saved to a file and memory-mapped on load
  (``vsm_mcp.vectors.hnsw``).
* ``pq`` — faiss IVF-PQ codes in memory, full vectors in a ``np.memmap`` on disk for exact
  re-ranking of the candidates (``vsm_mcp.vectors.pq``): ~1/16 of the float32 RAM.
* ``pgvector`` — a PostgreSQL table with an HNSW index (``vsm_mcp.vectors.pgvector``).

Conventions shared by every backend:

* ids are integers in ``0 .. 2**63-1``; ``upsert`` replaces the vector and metadata of an id.
* ``search`` returns ``[(id, distance), …]`` best first, where **distance is smaller = closer**:
  ``cos`` → ``1 - cosine_similarity``, ``ip`` → ``1 - dot``, ``l2`` → squared Euclidean distance.
* metadata per id may carry ``tenant`` (str), ``collection`` (str) and ``tags`` (list of str);
  a ``Filter`` on those is applied inside the search (see ``vsm_mcp.vectors.filter``), and a
  filter naming a tenant never returns another tenant's id.
* bad input raises ``InvalidArguments``: wrong dimension, NaN/inf, ids out of range, duplicates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from vsm_mcp.errors import ConfigError, InvalidArguments
from vsm_mcp.vectors.filter import Filter

__all__ = [
    "BACKENDS", "METRICS", "Filter", "Hit", "Metric", "VectorIndex", "check_ids", "check_matrix",
    "exact_distances", "make_index", "open_index",
]

Metric = Literal["cos", "ip", "l2"]
METRICS: tuple[str, ...] = ("cos", "ip", "l2")
BACKENDS: tuple[str, ...] = ("usearch", "pq", "pgvector")
Hit = tuple[int, float]
MAX_ID = 2**63 - 1


@runtime_checkable
class VectorIndex(Protocol):
    """A mutable nearest-neighbour index over integer ids."""

    dim: int
    metric: Metric

    def upsert(
        self, ids: Sequence[int] | npt.NDArray[Any], vectors: npt.ArrayLike,
        meta: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Insert or replace ``ids`` (shape ``(n,)``) with ``vectors`` (shape ``(n, dim)``)."""
        ...

    def remove(self, ids: Sequence[int] | npt.NDArray[Any]) -> int:
        """Remove ids; unknown ids are ignored. Returns how many were removed."""
        ...

    def search(self, query: npt.ArrayLike, k: int, filter: Filter | None = None) -> list[Hit]:
        """The ``k`` nearest ids to ``query`` (shape ``(dim,)``) that pass ``filter``."""
        ...

    def save(self, path: str | Path) -> None:
        """Persist to the directory ``path`` (created if missing)."""
        ...

    def stats(self) -> dict[str, Any]:
        """Size, parameters and memory figures, JSON-serialisable."""
        ...

    def __len__(self) -> int: ...


def check_metric(metric: str) -> Metric:
    if metric not in METRICS:
        raise InvalidArguments(f"metric {metric!r} is not supported; use one of {', '.join(METRICS)}")
    return metric  # type: ignore[return-value]


def check_matrix(vectors: npt.ArrayLike, dim: int, what: str = "vectors") -> npt.NDArray[np.float32]:
    """``vectors`` as a C-contiguous float32 ``(n, dim)`` matrix, or InvalidArguments saying why not."""
    try:
        arr = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidArguments(f"{what} must be numbers: {exc}") from None
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise InvalidArguments(f"{what} must be a 2-D array of shape (n, {dim}), got {arr.ndim}-D")
    if arr.shape[1] != dim:
        raise InvalidArguments(f"dimension mismatch: {what} have dimension {arr.shape[1]}, the index has {dim}")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise InvalidArguments(f"{what} row {bad} contains NaN or infinity")
    return np.ascontiguousarray(arr)


def check_query(query: npt.ArrayLike, dim: int, k: object) -> npt.NDArray[np.float32]:
    """One query vector as a ``(1, dim)`` float32 matrix, and ``k`` a positive integer, or
    InvalidArguments saying which is wrong (every backend's ``search`` starts here)."""
    q = check_matrix(query, dim, "query")
    if q.shape[0] != 1:
        raise InvalidArguments("search takes one query vector")
    if not isinstance(k, int) or k < 1:
        raise InvalidArguments(f"k must be a positive integer, got {k!r}")
    return q


def check_ids(ids: Sequence[int] | npt.NDArray[Any], n: int | None = None) -> npt.NDArray[np.int64]:
    """``ids`` as an int64 array of distinct values in ``0..2**63-1`` (and of length ``n``)."""
    try:
        arr = np.asarray(ids)
    except (TypeError, ValueError) as exc:
        raise InvalidArguments(f"ids must be integers: {exc}") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size and arr.dtype.kind not in "iu":
        raise InvalidArguments(f"ids must be integers, got {arr.dtype}")
    if arr.ndim != 1:
        raise InvalidArguments("ids must be a flat sequence of integers")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > MAX_ID):
        raise InvalidArguments("ids must be in 0 .. 2**63-1")
    out = arr.astype(np.int64)
    if n is not None and out.size != n:
        raise InvalidArguments(f"{out.size} ids for {n} vectors; give one id per vector")
    if np.unique(out).size != out.size:
        raise InvalidArguments("ids in one call must be distinct")
    return out


def exact_distances(base: npt.NDArray[Any], query: npt.NDArray[np.float32], metric: Metric) -> npt.NDArray[np.float32]:
    """Distances (smaller = closer, the conventions above) from ``query`` to each row of ``base``."""
    base = np.asarray(base, dtype=np.float32)
    if metric == "l2":
        diff = base - query
        out: npt.NDArray[np.float32] = np.einsum("ij,ij->i", diff, diff)
        return out
    dots = base @ query
    if metric == "cos":
        norms = np.linalg.norm(base, axis=1) * float(np.linalg.norm(query))
        dots = dots / np.maximum(norms, 1e-12)
    result: npt.NDArray[np.float32] = (1.0 - dots).astype(np.float32)
    return result


def make_index(backend: str, dim: int, metric: str = "cos", **params: Any) -> VectorIndex:
    """A new, empty index. ``params`` are the backend's tuning knobs (see its class docstring)."""
    if not isinstance(dim, int) or not 1 <= dim <= 65536:
        raise InvalidArguments(f"dimension must be an integer in 1..65536, got {dim!r}")
    m = check_metric(metric)
    if backend == "usearch":
        from vsm_mcp.vectors.hnsw import UsearchIndex

        return UsearchIndex(dim, m, **params)
    if backend == "pq":
        from vsm_mcp.vectors.pq import PQIndex

        return PQIndex(dim, m, **params)
    if backend == "pgvector":
        from vsm_mcp.vectors.pgvector import PgVectorIndex

        index: VectorIndex = PgVectorIndex(dim, m, **params)
        return index
    raise ConfigError(f"unknown vector backend {backend!r}; use one of {', '.join(BACKENDS)}")


def open_index(path: str | Path, **params: Any) -> VectorIndex:
    """Load an index saved with ``save(path)``; the backend is read from ``path/manifest.json``
    (``pgvector`` keeps its data in PostgreSQL and needs ``dsn=…`` here)."""
    import json

    manifest_path = Path(path) / "manifest.json"
    if not manifest_path.is_file():
        raise InvalidArguments(f"no saved vector index at {path} (manifest.json missing)")
    manifest = json.loads(manifest_path.read_text())
    backend = manifest["backend"]
    if backend == "usearch":
        from vsm_mcp.vectors.hnsw import UsearchIndex

        return UsearchIndex.load(path, **params)
    if backend == "pq":
        from vsm_mcp.vectors.pq import PQIndex

        return PQIndex.load(path, **params)
    if backend == "pgvector":
        from vsm_mcp.vectors.pgvector import PgVectorIndex

        knobs = {k: manifest[k] for k in ("table", "m", "ef_construction", "ef_search")}
        index: VectorIndex = PgVectorIndex(int(manifest["dim"]), manifest["metric"], **{**knobs, **params})
        return index
    raise ConfigError(f"unknown vector backend {backend!r} in {manifest_path}")
