"""A replica's copy of the upstream registry: rows keyed by (owner, kind, name), merged by revision.

The database is the one writer of order: every change of a registry row gets a new, larger
``revision`` (a PostgreSQL sequence; on SQLite the single writer's ``max + 1``) inside the
transaction that writes it, and a removal keeps the row as a tombstone (``deleted``) so it can
win against an older copy. A replica reads rows from the database — on a bus notification, on
the poll, at start — and merges them here: per key the row with the larger revision wins.

``merge`` is the join of a lattice (the per-key maximum), so it is commutative, associative and
idempotent: replicas that have read the same rows — in any order, any number of times, in
overlapping snapshots — hold the same state (tests/unit/router/test_registry_state.py checks it
with hypothesis). Concurrent writers never lose a field silently either: an update is a patch
applied to the current row under the row lock (store.py), so patches of different fields both
survive and patches of the same field end with the one committed last, on every replica.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str, str]  # (owner, kind, name)
KINDS = ("upstream", "override", "secret")


@dataclass(frozen=True, slots=True)
class Row:
    owner: str
    kind: str
    name: str
    revision: int
    deleted: bool = False
    body: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> Key:
        return (self.owner, self.kind, self.name)

    def beats(self, other: Row | None) -> bool:
        """Does this copy replace ``other``? Revisions are unique per registry, so this is total."""
        return other is None or self.revision > other.revision


@dataclass
class RegistryState:
    rows: dict[Key, Row] = field(default_factory=dict)

    def merge(self, incoming: Iterable[Row]) -> set[Key]:
        """Join ``incoming`` rows; returns the keys whose winning row changed."""
        changed: set[Key] = set()
        for row in incoming:
            if row.beats(self.rows.get(row.key)):
                self.rows[row.key] = row
                changed.add(row.key)
        return changed

    def live(self, kind: str, owner: str | None = None) -> Iterator[Row]:
        """Rows of ``kind`` that are not removed (of ``owner`` when given), in key order."""
        for key in sorted(self.rows):
            row = self.rows[key]
            if row.kind == kind and not row.deleted and (owner is None or row.owner == owner):
                yield row

    def get(self, owner: str, kind: str, name: str) -> Row | None:
        row = self.rows.get((owner, kind, name))
        return None if row is None or row.deleted else row

    def fingerprint(self) -> tuple[int, int]:
        """(row count, revision sum): changes whenever any row does (revisions only grow)."""
        return len(self.rows), sum(r.revision for r in self.rows.values())

    def view(self) -> dict[Key, tuple[int, bool, Any]]:
        """A comparable snapshot (tests compare replicas with it)."""
        return {k: (r.revision, r.deleted, r.body) for k, r in self.rows.items()}
