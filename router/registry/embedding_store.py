"""Persisted tool embeddings, keyed by a hash of (embedder name, embedded text).

A tool is re-embedded only when the text it is embedded as changes (its name, title,
description or parameters) or the embedder changes; a restart with 10,000 known tools reads
their vectors back instead of running the model. Stored under ``<VSM_HOME>/embeddings`` in a
diskcache (SQLite) directory, safe for several processes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


def content_key(embedder_name: str, text: str) -> str:
    """The store key of ``text`` embedded by ``embedder_name``."""
    return hashlib.sha256(f"{embedder_name}\x00{text}".encode()).hexdigest()


class EmbeddingStore(Protocol):
    def get_many(self, keys: Iterable[str]) -> dict[str, Vector]:
        """The stored vectors among ``keys`` (missing keys are absent from the result)."""
        ...

    def put_many(self, items: Mapping[str, Vector]) -> None:
        """Store vectors by key."""
        ...


class MemoryEmbeddingStore:
    """In-process store: for tests and throwaway registries (the benchmark)."""

    def __init__(self) -> None:
        self._data: dict[str, Vector] = {}

    def get_many(self, keys: Iterable[str]) -> dict[str, Vector]:
        return {k: self._data[k] for k in keys if k in self._data}

    def put_many(self, items: Mapping[str, Vector]) -> None:
        self._data.update(items)


class DiskEmbeddingStore:
    """diskcache-backed store; vectors are kept as raw float32 bytes."""

    def __init__(self, directory: Path, dim: int) -> None:
        import diskcache

        directory.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._cache = diskcache.Cache(str(directory), size_limit=2**31)

    def get_many(self, keys: Iterable[str]) -> dict[str, Vector]:
        out: dict[str, Vector] = {}
        for key in keys:
            raw = self._cache.get(key)
            if isinstance(raw, bytes) and len(raw) == 4 * self.dim:
                out[key] = np.frombuffer(raw, dtype=np.float32).copy()
        return out

    def put_many(self, items: Mapping[str, Vector]) -> None:
        with self._cache.transact():
            for key, vec in items.items():
                self._cache.set(key, np.asarray(vec, dtype=np.float32).tobytes())

    def close(self) -> None:
        self._cache.close()


def default_store(home: Path, embedder_name: str, dim: int) -> DiskEmbeddingStore:
    """The store for ``embedder_name`` under ``home`` (one directory per embedder)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in embedder_name)
    return DiskEmbeddingStore(home / "embeddings" / safe, dim)
