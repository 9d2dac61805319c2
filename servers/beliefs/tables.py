"""Tables of the beliefs server; migration 0006_beliefs creates them (tenant-owned, RLS).

Each replica (``replica`` = its node id) keeps its own rows, so several processes may share one
database: ``belief_log`` is the write-ahead log of deltas joined since the last snapshot and
``belief_snapshots`` one full encoded state per (tenant, replica).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, LargeBinary, PrimaryKeyConstraint
from sqlmodel import Field

from vsm_mcp.models import TenantOwned


class BeliefLogRow(TenantOwned, table=True):
    __tablename__ = "belief_log"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "replica", "seq"),)
    replica: str = Field(max_length=64)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class BeliefSnapshotRow(TenantOwned, table=True):
    __tablename__ = "belief_snapshots"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "replica"),)
    replica: str = Field(max_length=64)
    upto_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    size: int = 0
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
