"""Metadata filters for vector search: ``Filter`` and the columnar ``MetaTable`` that evaluates it.

The in-process backends keep, per id, a tenant code, a collection code and tag postings in
numpy columns. ``MetaTable.allowed(filter)`` turns a filter into the exact allow-list of ids
(a few vectorised comparisons, ~1 ms per million rows); each backend then searches *only*
those ids — faiss through an id selector, usearch either exactly over the allow-list (selective
filters) or through the graph with a candidate budget sized from the measured selectivity,
falling back to the exact path when the budget is not met. Nothing outside the allow-list is
ever returned, so a tenant filter is a hard isolation boundary, not a ranking hint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vsm_mcp.errors import InvalidArguments

__all__ = ["Filter", "MetaTable", "check_meta"]

IdArray = npt.NDArray[np.int64]
NO_CODE = -1


@dataclass(frozen=True)
class Filter:
    """Which ids a search may return. Empty fields do not constrain.

    ``tags_all``: every listed tag must be present; ``tags_any``: at least one of them.
    """

    tenant: str | None = None
    collection: str | None = None
    tags_all: tuple[str, ...] = field(default_factory=tuple)
    tags_any: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Filter | None:
        """Build from JSON (``{"tenant", "collection", "tags_all", "tags_any"}``); unknown keys are errors."""
        if not data:
            return None
        unknown = set(data) - {"tenant", "collection", "tags_all", "tags_any"}
        if unknown:
            raise InvalidArguments(f"unknown filter field(s): {', '.join(sorted(unknown))}")
        return cls(
            tenant=_opt_str(data.get("tenant"), "filter.tenant"),
            collection=_opt_str(data.get("collection"), "filter.collection"),
            tags_all=_tags(data.get("tags_all"), "filter.tags_all"),
            tags_any=_tags(data.get("tags_any"), "filter.tags_any"),
        )

    @property
    def is_empty(self) -> bool:
        return self.tenant is None and self.collection is None and not self.tags_all and not self.tags_any

    def matches(self, meta: Mapping[str, Any] | None) -> bool:
        """Whether one id's metadata passes (the reference semantics every backend implements)."""
        meta = meta or {}
        if self.tenant is not None and meta.get("tenant") != self.tenant:
            return False
        if self.collection is not None and meta.get("collection") != self.collection:
            return False
        tags = set(meta.get("tags") or ())
        if not set(self.tags_all) <= tags:
            return False
        return not self.tags_any or bool(tags & set(self.tags_any))


def _opt_str(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidArguments(f"{what} must be a string")


def _tags(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(t, str) for t in value):
        raise InvalidArguments(f"{what} must be a list of strings")
    return tuple(value)


def check_meta(meta: Mapping[str, Any] | None, row: int) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(tenant, collection, tags) of one metadata dict; other keys are ignored (not indexed)."""
    if meta is None:
        return None, None, ()
    if not isinstance(meta, Mapping):
        raise InvalidArguments(f"meta[{row}] must be an object")
    return (
        _opt_str(meta.get("tenant"), f"meta[{row}].tenant"),
        _opt_str(meta.get("collection"), f"meta[{row}].collection"),
        _tags(meta.get("tags"), f"meta[{row}].tags"),
    )


class MetaTable:
    """Columnar metadata of the live ids of one index (rows are reused when an id is upserted)."""

    def __init__(self) -> None:
        self._row: dict[int, int] = {}
        self._n = 0
        self._ids = np.zeros(0, dtype=np.int64)
        self._tenant = np.zeros(0, dtype=np.int32)
        self._coll = np.zeros(0, dtype=np.int32)
        self._alive = np.zeros(0, dtype=bool)
        self._vocab: dict[str, int] = {}
        self._tag_rows: dict[str, set[int]] = {}
        self._row_tags: dict[int, tuple[str, ...]] = {}
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def __contains__(self, item: int) -> bool:
        row = self._row.get(int(item))
        return row is not None and bool(self._alive[row])

    def contains(self, ids: IdArray) -> npt.NDArray[np.bool_]:
        return np.fromiter((int(i) in self for i in ids), dtype=bool, count=len(ids))

    def _grow(self, extra: int) -> None:
        need = self._n + extra
        if need <= self._ids.size:
            return
        cap = max(need, 2 * self._ids.size, 1024)
        for name in ("_ids", "_tenant", "_coll", "_alive"):
            old = getattr(self, name)
            new = np.zeros(cap, dtype=old.dtype)
            new[: self._n] = old[: self._n]
            setattr(self, name, new)

    def _code(self, value: str | None) -> int:
        if value is None:
            return NO_CODE
        return self._vocab.setdefault(value, len(self._vocab))

    def upsert(self, ids: IdArray, meta: Sequence[Mapping[str, Any] | None] | None) -> None:
        """Record ``ids`` as live with their metadata (validated before anything changes)."""
        if meta is not None and len(meta) != len(ids):
            raise InvalidArguments(f"{len(meta)} metadata objects for {len(ids)} ids")
        parsed = [check_meta(m, i) for i, m in enumerate(meta)] if meta is not None else None
        self._grow(len(ids))
        rows = np.empty(len(ids), dtype=np.int64)
        for j, raw in enumerate(ids.tolist()):
            row = self._row.get(raw)
            if row is None:
                row = self._row[raw] = self._n
                self._n += 1
            if not self._alive[row]:
                self._live += 1
            rows[j] = row
            self._drop_tags(row)
        self._ids[rows] = ids
        self._alive[rows] = True
        if parsed is None:
            self._tenant[rows] = NO_CODE
            self._coll[rows] = NO_CODE
            return
        for row, (tenant, coll, tags) in zip(rows.tolist(), parsed, strict=True):
            self._tenant[row] = self._code(tenant)
            self._coll[row] = self._code(coll)
            if tags:
                self._row_tags[row] = tags
                for tag in tags:
                    self._tag_rows.setdefault(tag, set()).add(row)

    def _drop_tags(self, row: int) -> None:
        for tag in self._row_tags.pop(row, ()):
            self._tag_rows[tag].discard(row)

    def remove(self, ids: IdArray) -> IdArray:
        """Mark ids dead; returns those that were live."""
        gone: list[int] = []
        for raw in ids.tolist():
            row = self._row.get(raw)
            if row is not None and self._alive[row]:
                self._alive[row] = False
                self._drop_tags(row)
                self._live -= 1
                gone.append(raw)
        return np.asarray(gone, dtype=np.int64)

    def get(self, item: int) -> dict[str, Any] | None:
        """The indexed metadata of one live id."""
        row = self._row.get(int(item))
        if row is None or not self._alive[row]:
            return None
        names = {code: name for name, code in self._vocab.items()}
        return {
            "tenant": names.get(int(self._tenant[row])),
            "collection": names.get(int(self._coll[row])),
            "tags": list(self._row_tags.get(row, ())),
        }

    def _mask(self, flt: Filter) -> npt.NDArray[np.bool_]:
        n = self._n
        mask = self._alive[:n].copy()
        for value, column in ((flt.tenant, self._tenant), (flt.collection, self._coll)):
            if value is not None:
                code = self._vocab.get(value)
                if code is None:
                    return np.zeros(n, dtype=bool)
                mask &= column[:n] == code
        for tag in flt.tags_all:
            mask &= self._tag_mask([tag])
        if flt.tags_any:
            mask &= self._tag_mask(flt.tags_any)
        return mask

    def _tag_mask(self, tags: Sequence[str]) -> npt.NDArray[np.bool_]:
        out = np.zeros(self._n, dtype=bool)
        for tag in tags:
            rows = self._tag_rows.get(tag)
            if rows:
                out[np.fromiter(rows, dtype=np.int64, count=len(rows))] = True
        return out

    def allowed(self, flt: Filter | None) -> IdArray | None:
        """The live ids passing ``flt``; ``None`` means "every id" (no filter)."""
        if flt is None or flt.is_empty:
            return None
        ids: IdArray = self._ids[: self._n][self._mask(flt)]
        return ids

    def live_ids(self) -> IdArray:
        ids: IdArray = self._ids[: self._n][self._alive[: self._n]]
        return ids

    # --- persistence --------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        n = self._n
        np.savez(
            directory / "meta.npz", ids=self._ids[:n], tenant=self._tenant[:n], coll=self._coll[:n],
            alive=self._alive[:n],
        )
        tags = {tag: sorted(rows) for tag, rows in self._tag_rows.items() if rows}
        (directory / "meta.json").write_text(json.dumps({"vocab": self._vocab, "tags": tags}))

    @classmethod
    def load(cls, directory: Path) -> MetaTable:
        table = cls()
        with np.load(directory / "meta.npz") as data:
            table._ids, table._tenant = data["ids"].copy(), data["tenant"].copy()
            table._coll, table._alive = data["coll"].copy(), data["alive"].copy()
        table._n = int(table._ids.size)
        table._live = int(table._alive.sum())
        table._row = dict(zip(table._ids.tolist(), range(table._n), strict=True))
        extra = json.loads((directory / "meta.json").read_text())
        table._vocab = {str(k): int(v) for k, v in extra["vocab"].items()}
        for tag, rows in extra["tags"].items():
            table._tag_rows[tag] = set(rows)
            for row in rows:
                table._row_tags[row] = (*table._row_tags.get(row, ()), tag)
        return table
