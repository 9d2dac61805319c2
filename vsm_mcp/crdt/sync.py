"""Anti-entropy: what to send a peer after reading its digest.

A digest is the peer's causal context plus the XOR hash of its live dots. Two cases need an
answer:

* the peer has not seen some of our dots → send ``missing_for(peer ctx)``, a small delta;
* the contexts are equal but the live dots differ (a removal of a shared entry reached only
  one side) → send the full state.

If the peer has seen more than us, it answers our digest the same way. Repeating rounds
converges: each round either grows a context or, once the contexts are equal, makes the
states equal by a full-state join.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vsm_mcp.crdt.beliefs import BeliefSet
from vsm_mcp.crdt.causal import CausalContext
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


def reply_to(state: BeliefSet, peer: Digest) -> BeliefSet | None:
    """What ``state`` should send a peer that published ``peer``; None when nothing helps it."""
    if not state.ctx.leq(peer.ctx):
        return state.missing_for(peer.ctx)
    if state.ctx == peer.ctx and state.digest != peer.digest:
        return state
    return None
