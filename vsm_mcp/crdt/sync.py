"""Anti-entropy: what to send a peer after reading its digest.

A digest is the peer's causal context plus the XOR hash of its live dots. Two cases need an
answer:

* the peer has not seen some of our dots → send ``missing_for(peer ctx)``, a small delta;
* the contexts are equal but the live dots differ (a removal of a shared entry reached only
  one side) → send our live dots (run-length encoded, so small); the peer answers with a
  removal delta for the dots it has removed (``removals_for``). No full state is shipped.

If the peer has seen more than us, it answers our digest the same way. Repeating rounds
converges: each round either grows a context or, once the contexts are equal, removes on
each side what the other removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vsm_mcp.crdt.beliefs import BeliefSet
from vsm_mcp.crdt.causal import CausalContext, Dot
from vsm_mcp.errors import InvalidArguments


@dataclass(frozen=True, slots=True)
class Digest:
    """A summary of a replica's state: its causal context, live-dot hash and key count."""

    ctx: CausalContext
    digest: int
    size: int

    @classmethod
    def of(cls, state: BeliefSet) -> Digest:
        return cls(state.ctx.copy(), state.digest, len(state))

    def to_obj(self) -> dict[str, Any]:
        return {
            "vv": sorted([n, c] for n, c in self.ctx.vv.items()),
            "cl": sorted([n, sorted(s)] for n, s in self.ctx.cloud.items()),
            "h": f"{self.digest:016x}",
            "size": self.size,
        }

    @classmethod
    def from_obj(cls, obj: Any) -> Digest:
        try:
            vv = {str(n): int(c) for n, c in obj["vv"]}
            cloud = [(str(n), int(c)) for n, cs in obj["cl"] for c in cs]
            return cls(CausalContext(vv, cloud), int(obj["h"], 16), int(obj["size"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArguments(f"malformed belief digest: {exc!r}") from None


def in_sync(state: BeliefSet, peer: Digest) -> bool:
    return state.digest == peer.digest and state.ctx == peer.ctx


@dataclass(frozen=True, slots=True)
class LiveDots:
    """The dots of a state's live entries, as sorted counter ranges per node."""

    ranges: dict[str, list[tuple[int, int]]]

    @classmethod
    def of(cls, state: BeliefSet) -> LiveDots:
        per_node: dict[str, list[int]] = {}
        for node, n in state.entries:
            per_node.setdefault(node, []).append(n)
        ranges: dict[str, list[tuple[int, int]]] = {}
        for node, counters in per_node.items():
            counters.sort()
            runs: list[tuple[int, int]] = []
            start = prev = counters[0]
            for n in counters[1:]:
                if n != prev + 1:
                    runs.append((start, prev))
                    start = n
                prev = n
            runs.append((start, prev))
            ranges[node] = runs
        return cls(ranges)

    def __iter__(self) -> Iterator[Dot]:
        for node, runs in self.ranges.items():
            for a, b in runs:
                for n in range(a, b + 1):
                    yield (node, n)

    def to_obj(self) -> list[Any]:
        return sorted([node, [list(r) for r in runs]] for node, runs in self.ranges.items())

    @classmethod
    def from_obj(cls, obj: Any) -> LiveDots:
        try:
            ranges = {str(node): [(int(a), int(b)) for a, b in runs] for node, runs in obj}
        except (TypeError, ValueError) as exc:
            raise InvalidArguments(f"malformed live-dot list: {exc!r}") from None
        if any(a < 1 or b < a for runs in ranges.values() for a, b in runs):
            raise InvalidArguments("malformed live-dot list: ranges must be 1 ≤ start ≤ end")
        return cls(ranges)


def reply_to(state: BeliefSet, peer: Digest) -> BeliefSet | LiveDots | None:
    """What ``state`` should send a peer that published ``peer``; None when nothing helps it.

    A BeliefSet is a delta for the peer to join; LiveDots asks the peer for ``removals_for``.
    """
    if not state.ctx.leq(peer.ctx):
        return state.missing_for(peer.ctx)
    if state.ctx == peer.ctx and state.digest != peer.digest:
        return LiveDots.of(state)
    return None


def removals_for(state: BeliefSet, peer_live: LiveDots) -> BeliefSet | None:
    """A removal delta for the peer: its live dots that ``state`` has seen and removed."""
    entries, seen = state.entries, state.ctx.contains
    gone = [d for d in peer_live if d not in entries and seen(d)]
    return BeliefSet(ctx=CausalContext(cloud=gone)) if gone else None
