"""A tiny simulated cluster of BeliefSet replicas driven by hypothesis-generated operations."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from vsm_mcp.crdt import (
    Belief,
    BeliefSet,
    Digest,
    HybridClock,
    LiveDots,
    Replica,
    decode,
    encode,
    joined,
    removals_for,
    reply_to,
)

KEYS = ("a", "b", "c")
NODES = 3

NET_KINDS = ("deliver", "dup", "drop")


def decode_op(n: int, network: bool) -> tuple[Any, ...]:
    """One operation from one integer (much cheaper for hypothesis to draw than nested tuples;
    smaller integers shrink to simpler operations)."""
    n, r = divmod(n, NODES)
    n, k = divmod(n, len(KEYS))
    n, kind = divmod(n, 5)
    if kind <= 1 or (kind == 4 and not network):
        return ("put", r, KEYS[k], n % 4, (n // 4) % 3)
    if kind == 2:
        return ("del", r, KEYS[k])
    if not network:
        return ("sync", r, k % NODES)
    return (NET_KINDS[n % 3], n // 3)


# A history of puts, dels and full-state syncs between replicas.
history = st.lists(st.integers(0, 1 << 16), max_size=14).map(lambda xs: [decode_op(x, False) for x in xs])
# Puts and dels whose deltas are delivered, duplicated or dropped (by index into the in-flight queue).
network_history = st.lists(st.integers(0, 1 << 16), max_size=24).map(lambda xs: [decode_op(x, True) for x in xs])


class Cluster:
    """Replicas n0..n2 sharing a controllable wall clock (small values, so stamps often tie)."""

    def __init__(self) -> None:
        self.wall = 0
        self.replicas = [Replica(f"n{i}", clock=HybridClock(lambda: self.wall)) for i in range(NODES)]
        self.deltas: list[BeliefSet] = []
        self.inflight: list[tuple[int, BeliefSet]] = []

    def apply(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "put":
            _, r, key, value, wall = op
            self.wall = wall
            self._emit(r, self.replicas[r].assert_belief(key, Belief(value, 0.5, f"s{r}")))
        elif kind == "del":
            _, r, key = op
            self._emit(r, self.replicas[r].retract(key))
        elif kind == "sync":
            _, src, dst = op
            self.replicas[dst].join(self.replicas[src].state.copy())
        elif self.inflight:
            i = op[1] % len(self.inflight)
            dest, delta = self.inflight[i] if kind == "dup" else self.inflight.pop(i)
            if kind != "drop":
                self.replicas[dest].join(decode(encode(delta)))

    def _emit(self, origin: int, delta: BeliefSet | None) -> None:
        if delta is None:
            return
        self.deltas.append(delta)
        self.inflight.extend((i, delta) for i in range(NODES) if i != origin)

    def states(self) -> list[BeliefSet]:
        return [r.state for r in self.replicas]

    def sync_all(self) -> None:
        """Bring every replica to the join of all states (a full-state exchange)."""
        everything = join_all(self.states())
        for r in self.replicas:
            r.join(everything)

    def anti_entropy(self, max_rounds: int = 6) -> int:
        """Digest exchange rounds (through the codec) until all replicas are equal; returns rounds used."""
        for rnd in range(1, max_rounds + 1):
            for i, mine in enumerate(self.replicas):
                for j, peer in enumerate(self.replicas):
                    if i != j:
                        exchange(mine, peer)
            s = self.states()
            if all(x == s[0] for x in s[1:]):
                return rnd
        raise AssertionError("anti-entropy did not converge")


def exchange(mine: Replica, peer: Replica) -> None:
    """One anti-entropy step: ``peer`` published its digest and ``mine`` answers."""
    reply = reply_to(mine.state, Digest.from_obj(Digest.of(peer.state).to_obj()))
    if isinstance(reply, LiveDots):
        removal = removals_for(peer.state, LiveDots.from_obj(reply.to_obj()))
        if removal is not None:
            mine.join(decode(encode(removal)))
    elif reply is not None:
        peer.join(decode(encode(reply)))


def run(ops: list[tuple[Any, ...]]) -> Cluster:
    c = Cluster()
    for op in ops:
        c.apply(op)
    return c


def join_all(states: list[BeliefSet]) -> BeliefSet:
    out = BeliefSet()
    for s in states:
        out = joined(out, s)
    return out
