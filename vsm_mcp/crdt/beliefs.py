"""BeliefSet: an add-wins observed-remove map from keys to multi-value registers of beliefs.

State = ``(entries, context)``: every write adds one entry tagged with a fresh dot; the causal
context is every dot the replica has seen. An entry whose dot is in the context but not among
the entries was removed — that is the whole tombstone story, so nothing is kept per delete and
nothing expires by age.

``join`` is the one merge, for deltas and full states alike (the standard dot-store join)::

    entries = (m1 ∩ m2) ∪ (m1 − c2) ∪ (m2 − c1)        context = c1 ∪ c2

Set union/intersection are commutative, associative and idempotent, hence so is the join.

A write (``assert``) removes the dots it observed for the key and adds its own, so a later write
replaces what its writer saw, while writes concurrent with it survive as *siblings*. A remove
(``retract``) only covers observed dots: a concurrent add is not observed, so the add wins.
Reading a key resolves its siblings deterministically: the largest ``(hlc stamp, node, counter)``
wins — a total order, identical on every replica holding the same state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any

from vsm_mcp.crdt.causal import CausalContext, Dot
from vsm_mcp.crdt.hlc import HybridClock, Stamp

_MASK = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Belief:
    """What is believed about a key: a JSON value, a confidence in [0, 1], its source and evidence."""

    value: Any
    confidence: float = 1.0
    source: str = ""
    evidence: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.confidence, (int, float)) or isinstance(self.confidence, bool):
            raise ValueError("confidence must be a number")
        if not math.isfinite(self.confidence) or not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be between 0 and 1, got {self.confidence!r}")
        if not isinstance(self.source, str):
            raise ValueError("source must be a string")
        if not isinstance(self.evidence, tuple) or not all(isinstance(e, str) for e in self.evidence):
            raise ValueError("evidence must be a list of strings")


@dataclass(frozen=True, slots=True)
class Entry:
    """One write: the key, its hybrid-clock stamp, the belief, and the dot naming it."""

    key: str
    dot: Dot
    stamp: Stamp
    belief: Belief

    def order(self) -> tuple[int, int, str, int]:
        """The total order siblings are resolved by: (wall, logical, node, counter)."""
        return (self.stamp[0], self.stamp[1], self.dot[0], self.dot[1])


_node_hashes: dict[str, int] = {}


def dot_hash(dot: Dot) -> int:
    """A 64-bit hash of a dot, stable across processes (unlike ``hash()``)."""
    node, n = dot
    h = _node_hashes.get(node)
    if h is None:
        h = int.from_bytes(blake2b(node.encode(), digest_size=8).digest(), "big")
        if len(_node_hashes) < 65536:
            _node_hashes[node] = h
    x = (h + n * 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


@dataclass(eq=False, slots=True)
class BeliefSet:
    """A δ-CRDT state (a delta is a BeliefSet too). Invariant: every entry's dot is in ``ctx``."""

    entries: dict[Dot, Entry] = field(default_factory=dict)
    by_key: dict[str, set[Dot]] = field(default_factory=dict)
    ctx: CausalContext = field(default_factory=CausalContext)
    digest: int = 0  # XOR of dot_hash over live entries; with ctx, a cheap anti-entropy digest

    @classmethod
    def of(cls, entries: Iterable[Entry], ctx: CausalContext) -> BeliefSet:
        """Build a state; dots of ``entries`` missing from ``ctx`` are added to it."""
        out = cls(ctx=ctx)
        for e in entries:
            out._put(e)
            ctx.add(e.dot)
        return out

    # -- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.by_key)

    def __contains__(self, key: object) -> bool:
        return key in self.by_key

    def keys(self) -> Iterator[str]:
        return iter(self.by_key)

    def siblings(self, key: str) -> list[Entry]:
        """The concurrent entries of ``key``, winner first."""
        return sorted((self.entries[d] for d in self.by_key.get(key, ())), key=Entry.order, reverse=True)

    def get(self, key: str) -> Entry | None:
        """The winning entry of ``key`` (largest stamp, then node id, then counter), or None."""
        dots = self.by_key.get(key)
        if not dots:
            return None
        return max((self.entries[d] for d in dots), key=Entry.order)

    def is_empty(self) -> bool:
        return not self.entries and not self.ctx.vv and not self.ctx.cloud

    # -- the join ----------------------------------------------------------------------------
    def join(self, other: BeliefSet) -> set[str]:
        """Merge ``other`` (a delta or a full state) into ``self``; returns the keys that changed."""
        changed: set[str] = set()
        mine, theirs, their_ctx = self.entries, other.entries, other.ctx
        # (m1 − c2): drop what the other side saw and no longer has. Walk whichever is smaller
        # (a delta's context is a handful of dots; a full state's covers everything).
        vv, cloud = their_ctx.vv, their_ctx.cloud
        gone: list[Dot] = []
        if sum(vv.values()) + sum(map(len, cloud.values())) <= len(mine):
            for node, top in vv.items():
                for n in range(1, top + 1):
                    d = (node, n)
                    if d in mine and d not in theirs:
                        gone.append(d)
            for node, extra in cloud.items():
                for n in extra:
                    d = (node, n)
                    if d in mine and d not in theirs:
                        gone.append(d)
        else:
            contains = their_ctx.contains
            gone = [d for d in mine if d not in theirs and contains(d)]
        # (m2 − c1): add what we have never seen. Before the drops: a replaced value then keeps
        # its key's dot set instead of deleting and re-creating it.
        contains = self.ctx.contains
        for d, e in theirs.items():
            if d not in mine and not contains(d):
                self._put(e)
                changed.add(e.key)
        for d in gone:
            changed.add(self._drop(d))
        self.ctx.join(their_ctx)
        return changed

    def _put(self, e: Entry) -> None:
        self.entries[e.dot] = e
        dots = self.by_key.get(e.key)
        if dots is None:
            self.by_key[e.key] = {e.dot}
        else:
            dots.add(e.dot)
        self.digest ^= dot_hash(e.dot)

    def _drop(self, d: Dot) -> str:
        e = self.entries.pop(d)
        dots = self.by_key[e.key]
        dots.discard(d)
        if not dots:
            del self.by_key[e.key]
        self.digest ^= dot_hash(d)
        return e.key

    # -- value semantics -----------------------------------------------------------------
    def copy(self) -> BeliefSet:
        return BeliefSet(
            entries=dict(self.entries),
            by_key={k: set(v) for k, v in self.by_key.items()},
            ctx=self.ctx.copy(),
            digest=self.digest,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BeliefSet):
            return NotImplemented
        return self.entries == other.entries and self.ctx == other.ctx

    __hash__ = None  # type: ignore[assignment]  # mutable

    def missing_for(self, peer_ctx: CausalContext) -> BeliefSet:
        """The part of this state a peer whose context is ``peer_ctx`` has not seen.

        A valid delta: its context holds only dots the peer lacks, so joining it never drops an
        entry the peer has. Removals of dots the peer *has* seen need a full-state exchange
        (detected by unequal digests with equal contexts).
        """
        missing = self.ctx.minus(peer_ctx)
        entries = [e for d, e in self.entries.items() if not peer_ctx.contains(d)]
        return BeliefSet.of(entries, missing)


def joined(a: BeliefSet, b: BeliefSet) -> BeliefSet:
    """``a ⊔ b`` as a new state (neither argument is changed)."""
    out = a.copy()
    out.join(b)
    return out


class Replica:
    """One replica of a BeliefSet: a node id, a hybrid clock and the state.

    The mutators apply their delta locally and return it, to be shipped to peers, which
    ``join`` it. The node id must be unique per replica, and the state must be reloaded from
    durable storage before new writes, so a dot is never issued twice.
    """

    def __init__(self, node: str, state: BeliefSet | None = None, clock: HybridClock | None = None) -> None:
        if not node:
            raise ValueError("a replica needs a node id")
        self.node = node
        self.state = state if state is not None else BeliefSet()
        self.clock = clock or HybridClock()
        for e in self.state.entries.values():
            self.clock.observe(e.stamp)

    def assert_belief(self, key: str, belief: Belief, *, apply: bool = True) -> BeliefSet:
        """Set ``key`` to ``belief``, replacing every value of it this replica has seen.

        ``apply=False`` only builds the delta (to make it durable first); join it afterwards,
        before building the next one, so the dot is not issued twice.
        """
        dot = self.state.ctx.next_dot(self.node)
        entry = Entry(key, dot, self.clock.now(), belief)
        seen = self.state.by_key.get(key, set())
        delta = BeliefSet.of([entry], CausalContext(cloud=(*seen, dot)))
        if apply:
            self.state.join(delta)
        return delta

    def retract(self, key: str, *, apply: bool = True) -> BeliefSet | None:
        """Remove ``key`` as seen here (a concurrent assert elsewhere survives); None if absent."""
        seen = self.state.by_key.get(key)
        if not seen:
            return None
        delta = BeliefSet(ctx=CausalContext(cloud=tuple(seen)))
        if apply:
            self.state.join(delta)
        return delta

    def join(self, other: BeliefSet) -> set[str]:
        """Merge a delta or full state from a peer; returns the changed keys."""
        observe = self.clock.observe
        for e in other.entries.values():
            observe(e.stamp)
        return self.state.join(other)
