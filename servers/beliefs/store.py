"""Durable replica state: a write-ahead log of deltas plus periodic snapshots, per (tenant, replica).

``append`` commits a delta before the caller acknowledges the write; ``load`` rebuilds the state
as snapshot ⊔ every logged delta. The join is commutative and idempotent, so replay order and
overlap between a snapshot and the log do not matter. Snapshots are zlib-compressed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import anyio
from sqlalchemy import delete
from sqlmodel import col, select

from servers.beliefs.tables import BeliefLogRow, BeliefSnapshotRow
from vsm_mcp.crdt import BeliefSet, decode, encode
from vsm_mcp.db import Database
from vsm_mcp.models import utcnow


@dataclass
class Loaded:
    state: BeliefSet
    last_seq: int
    log_rows: int


class BeliefStore:
    """Persistence of one replica (``replica`` = node id) for any tenant."""

    def __init__(self, db: Database, replica: str) -> None:
        self.db = db
        self.replica = replica

    async def load(self, tenant: str) -> Loaded:
        async with self.db.tenant(tenant) as s:
            snap = (
                await s.execute(select(BeliefSnapshotRow).where(BeliefSnapshotRow.replica == self.replica))
            ).scalar_one_or_none()
            rows = (
                await s.execute(
                    select(BeliefLogRow.seq, BeliefLogRow.payload)
                    .where(BeliefLogRow.replica == self.replica)
                    .order_by(col(BeliefLogRow.seq))
                )
            ).all()
        state = BeliefSet()
        last = 0
        if snap is not None:
            payload = snap.payload
            state = await anyio.to_thread.run_sync(lambda: decode(zlib.decompress(payload)))
            last = snap.upto_seq
        for seq, payload in rows:
            state.join(decode(payload))
            last = max(last, seq)
        return Loaded(state, last, len(rows))

    async def append(self, tenant: str, seq: int, delta: BeliefSet) -> None:
        """Commit one delta to the log (returns once it is durable)."""
        async with self.db.tenant(tenant) as s:
            s.add(BeliefLogRow(tenant_id=tenant, replica=self.replica, seq=seq, payload=encode(delta)))

    async def snapshot(self, tenant: str, state: BeliefSet, upto_seq: int) -> None:
        """Store ``state`` (which includes every log row ≤ ``upto_seq``) and trim those rows."""
        payload = await anyio.to_thread.run_sync(lambda: zlib.compress(encode(state), 1))
        async with self.db.tenant(tenant) as s:
            row = (
                await s.execute(select(BeliefSnapshotRow).where(BeliefSnapshotRow.replica == self.replica))
            ).scalar_one_or_none()
            if row is None:
                row = BeliefSnapshotRow(tenant_id=tenant, replica=self.replica, upto_seq=upto_seq, payload=b"")
            row.payload, row.upto_seq, row.size, row.updated_at = payload, upto_seq, len(state), utcnow()
            s.add(row)
            await s.execute(
                delete(BeliefLogRow).where(
                    col(BeliefLogRow.replica) == self.replica, col(BeliefLogRow.seq) <= upto_seq
                )
            )
