"""Dots and the causal context: which events a replica has seen.

A *dot* ``(node, counter)`` names one write: the ``counter``-th event made by replica ``node``.
A causal context is a set of dots kept compact as a version vector (every dot ``1..vv[node]``
has been seen) plus a *cloud* of dots seen out of order. Adding the missing dot of a gap
folds the cloud into the vector again, so the metadata stays bounded by the number of
replicas (plus transient gaps) — no per-delete tombstones, nothing expires by age.

Every public method leaves the context *compacted* (no cloud dot at or directly after
``vv[node]``), which makes equality and serialization canonical.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

Dot = tuple[str, int]


class CausalContext:
    """A set of dots: version vector + cloud. Mutable; ``copy()`` for a snapshot."""

    __slots__ = ("vv", "cloud")

    def __init__(self, vv: dict[str, int] | None = None, cloud: Iterable[Dot] = ()) -> None:
        self.vv: dict[str, int] = {n: c for n, c in (vv or {}).items() if c > 0}
        self.cloud: dict[str, set[int]] = {}
        for dot in cloud:
            self._insert(dot)
        self.compact()

    # -- queries -------------------------------------------------------------------------
    def contains(self, dot: Dot) -> bool:
        """Has the event ``dot`` been seen?"""
        node, n = dot
        if n <= self.vv.get(node, 0):
            return True
        extra = self.cloud.get(node)
        return extra is not None and n in extra

    def max_counter(self, node: str) -> int:
        """The highest counter of ``node`` seen (0 if none)."""
        extra = self.cloud.get(node)
        top = self.vv.get(node, 0)
        return max(top, max(extra)) if extra else top

    def next_dot(self, node: str) -> Dot:
        """A fresh dot for a new event of ``node`` (not yet added)."""
        return (node, self.max_counter(node) + 1)

    def dot_count(self) -> int:
        """How many dots the context holds (its size as a set)."""
        return sum(self.vv.values()) + sum(len(s) for s in self.cloud.values())

    def metadata_size(self) -> int:
        """Entries stored to represent the set: vector entries + cloud dots."""
        return len(self.vv) + sum(len(s) for s in self.cloud.values())

    def dots(self) -> Iterator[Dot]:
        """Every dot in the set (use on small contexts: a version vector expands)."""
        for node, top in self.vv.items():
            for n in range(1, top + 1):
                yield (node, n)
        for node, extra in self.cloud.items():
            for n in extra:
                yield (node, n)

    def leq(self, other: CausalContext) -> bool:
        """Is every dot of ``self`` also in ``other``?"""
        for node, top in self.vv.items():
            if top > other.vv.get(node, 0):
                extra = other.cloud.get(node, set())
                if any(n not in extra for n in range(other.vv.get(node, 0) + 1, top + 1)):
                    return False
        return all(other.contains((node, n)) for node, extra in self.cloud.items() for n in extra)

    def minus(self, other: CausalContext) -> CausalContext:
        """The dots of ``self`` that ``other`` lacks (what a peer with ``other`` has not seen)."""
        out = CausalContext()
        for node, top in self.vv.items():
            base = other.vv.get(node, 0)
            extra = other.cloud.get(node, set())
            for n in range(base + 1, top + 1):
                if n not in extra:
                    out._insert((node, n))
        for node, mine in self.cloud.items():
            for n in mine:
                if not other.contains((node, n)):
                    out._insert((node, n))
        out.compact()
        return out

    # -- updates -------------------------------------------------------------------------
    def add(self, dot: Dot) -> None:
        """Record one dot, folding the cloud into the vector where the gap closes."""
        node, n = dot
        top = self.vv.get(node, 0)
        if n <= top:
            return
        if n == top + 1:
            extra = self.cloud.get(node)
            while extra and n + 1 in extra:
                n += 1
                extra.discard(n)
            if extra is not None and not extra:
                del self.cloud[node]
            self.vv[node] = n
        else:
            self.cloud.setdefault(node, set()).add(n)

    def join(self, other: CausalContext) -> None:
        """Union with ``other`` (in place)."""
        touched: set[str] = set()
        for node, top in other.vv.items():
            if top > self.vv.get(node, 0):
                self.vv[node] = top
                touched.add(node)
        for node, extra in other.cloud.items():
            if node in touched:
                self.cloud.setdefault(node, set()).update(extra)
            else:
                for n in extra:
                    self.add((node, n))
        for node in touched:
            self._compact_node(node)

    def compact(self) -> None:
        """Fold every cloud dot that is covered by, or extends, the version vector."""
        for node in list(self.cloud):
            self._compact_node(node)

    def _insert(self, dot: Dot) -> None:
        self.cloud.setdefault(dot[0], set()).add(dot[1])

    def _compact_node(self, node: str) -> None:
        extra = self.cloud.get(node)
        if extra is None:
            return
        top = self.vv.get(node, 0)
        extra.difference_update([n for n in extra if n <= top])
        while top + 1 in extra:
            top += 1
            extra.discard(top)
        if top:
            self.vv[node] = top
        if not extra:
            del self.cloud[node]

    # -- value semantics ---------------------------------------------------------------
    def copy(self) -> CausalContext:
        out = CausalContext()
        out.vv = dict(self.vv)
        out.cloud = {n: set(s) for n, s in self.cloud.items()}
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CausalContext):
            return NotImplemented
        return self.vv == other.vv and self.cloud == other.cloud

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        cloud = {n: sorted(s) for n, s in sorted(self.cloud.items())}
        return f"CausalContext(vv={dict(sorted(self.vv.items()))}, cloud={cloud})"
