"""Tables of the search server; migration 0005_search creates them (tenant-owned, RLS on PostgreSQL).

``search_collections`` — one row per collection: dimension, metric, backend, embedder and a
``version`` bumped by every write, so a replica notices its in-memory index is stale.
``search_chunks`` — one row per indexed chunk: the document id and chunk number, the integer
``vid`` the vector index knows it by, the text (for BM25 and results), metadata, tags and the
float32 vector (the source of truth an index is rebuilt from).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field

from vsm_mcp.models import JSONType, TenantOwned, new_id


class SearchCollection(TenantOwned, table=True):
    __tablename__ = "search_collections"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(max_length=128)
    dim: int
    metric: str = Field(max_length=8)
    backend: str = Field(max_length=16)
    embedder: str = Field(default="", max_length=128)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    next_vid: int = Field(default=1, sa_column=Column(BigInteger, nullable=False))
    version: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class SearchChunk(TenantOwned, table=True):
    __tablename__ = "search_chunks"
    __table_args__ = (
        UniqueConstraint("collection_id", "doc_id", "chunk"),
        UniqueConstraint("collection_id", "vid"),
        Index("ix_search_chunks_doc", "collection_id", "doc_id"),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    collection_id: str = Field(foreign_key="search_collections.id", ondelete="CASCADE", max_length=36)
    doc_id: str = Field(max_length=512)
    chunk: int = 0
    vid: int = Field(sa_column=Column(BigInteger, nullable=False))
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    vector: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
