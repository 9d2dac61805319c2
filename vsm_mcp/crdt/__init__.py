"""Delta-state CRDTs: the replicated BeliefSet (see docs/ARCHITECTURE.md, "Beliefs CRDT").

Kernel code: no I/O, no imports of ``router`` or ``servers``.
"""

from vsm_mcp.crdt.beliefs import Belief, BeliefSet, Entry, Replica, dot_hash, joined
from vsm_mcp.crdt.causal import CausalContext, Dot
from vsm_mcp.crdt.codec import decode, encode, from_obj, to_obj
from vsm_mcp.crdt.hlc import HybridClock, Stamp
from vsm_mcp.crdt.sync import Digest, LiveDots, in_sync, removals_for, reply_to

__all__ = [
    "Belief", "BeliefSet", "CausalContext", "Digest", "Dot", "Entry", "HybridClock", "LiveDots", "Replica", "Stamp",
    "decode", "dot_hash", "encode", "from_obj", "in_sync", "joined", "removals_for", "reply_to", "to_obj",
]
