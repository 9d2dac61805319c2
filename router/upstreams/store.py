"""The upstream registry in the database: table ``upstream_registry`` (migration 0027).

One row per (owner, kind, name): ``kind`` is ``upstream`` (a definition), ``override`` (a tool
override, name ``server/tool``) or ``secret`` (a write-only value, name ``NAME``); ``owner`` is
a tenant id or ``""`` for the operator's global registry. The table is router configuration
that every replica reads whole (it runs every tenant's upstreams), so it is not a tenant-owned
table under row-level security: tenant isolation is enforced where rows are written and shown
(router/upstreams/admin_ops.py only lets a principal touch its own tenant's rows) and where
tools are listed, searched and called (the catalog's per-tenant views).

Every write takes a fresh ``revision`` in its transaction and removals keep a tombstone, so a
replica merges what it reads by revision (router/upstreams/registry_state.py). Secret values
are read only by ``secrets()``, when an upstream that refers to them is started.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Field, SQLModel

from router.upstreams.registry_state import Row
from vsm_mcp.db import Database
from vsm_mcp.errors import Conflict, NotFound
from vsm_mcp.models import JSONType, utcnow

SEQUENCE = "upstream_registry_revision"
_RETRIES = 8  # SQLite: a writer whose snapshot went stale gets SQLITE_BUSY at once; try again


class UpstreamRegistryRow(SQLModel, table=True):
    __tablename__ = "upstream_registry"
    owner: str = Field(primary_key=True, max_length=36)
    kind: str = Field(primary_key=True, max_length=16)
    name: str = Field(primary_key=True, max_length=200)
    revision: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    deleted: bool = False
    body: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    secret: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str = Field(default="", max_length=200)


_T = UpstreamRegistryRow.__table__  # type: ignore[attr-defined]
_PUBLIC = (_T.c.owner, _T.c.kind, _T.c.name, _T.c.revision, _T.c.deleted, _T.c.body)  # never the secret


def _row(r: Any) -> Row:
    return Row(owner=r.owner, kind=r.kind, name=r.name, revision=int(r.revision), deleted=bool(r.deleted), body=dict(r.body or {}))


Patch = Callable[[dict[str, Any] | None], dict[str, Any]]


class RegistryStore:
    """Reads and writes of ``upstream_registry``; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self) -> list[Row]:
        """Every row (tombstones too), without secret values."""
        async with self.db.system() as s:
            return [_row(r) for r in (await s.execute(sa.select(*_PUBLIC))).all()]

    async def fingerprint(self) -> tuple[int, int]:
        """(rows, sum of revisions): a cheap poll that changes whenever any row does."""
        async with self.db.system() as s:
            count, total = (await s.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(_T.c.revision), 0)))).one()
        return int(count), int(total)

    async def secrets(self, owner: str, names: set[str]) -> dict[str, str]:
        """The values of ``owner``'s stored secrets named ``names`` (for starting an upstream only)."""
        if not names:
            return {}
        async with self.db.system() as s:
            rows = (
                await s.execute(
                    sa.select(_T.c.name, _T.c.secret).where(
                        _T.c.owner == owner, _T.c.kind == "secret", _T.c.deleted.is_(False), _T.c.name.in_(sorted(names))
                    )
                )
            ).all()
        return {name: value or "" for name, value in rows}

    async def write(
        self,
        owner: str,
        kind: str,
        name: str,
        change: Patch | None,
        *,
        by: str = "",
        must_exist: bool | None = None,
        secret: str | None = None,
    ) -> Row:
        """Create, update or (``change=None``) remove one row under its row lock.

        ``change(current_body_or_None)`` returns the new body; it may raise to refuse (nothing is
        written). ``must_exist``: True = update/remove (NotFound if absent), False = create
        (Conflict if present), None = either.
        """
        for attempt in range(_RETRIES):
            try:
                return await self._write_once(owner, kind, name, change, by, must_exist, secret)
            except OperationalError as exc:
                if self.db.is_postgres or "locked" not in str(exc) or attempt == _RETRIES - 1:
                    raise
            except IntegrityError:  # two creators of one name raced: the loser sees it exists
                if must_exist is False:
                    raise Conflict(f"{kind} {name!r} already exists", data={"name": name}) from None
                raise
        raise AssertionError("unreachable")

    async def _write_once(
        self, owner: str, kind: str, name: str, change: Patch | None, by: str, must_exist: bool | None, secret: str | None
    ) -> Row:
        async with self.db.system() as s:
            where = (_T.c.owner == owner) & (_T.c.kind == kind) & (_T.c.name == name)
            query = sa.select(_T.c.revision, _T.c.deleted, _T.c.body).where(where)
            if self.db.is_postgres:
                query = query.with_for_update()
            current = (await s.execute(query)).first()
            live = current is not None and not current.deleted
            if must_exist is True and not live:
                raise NotFound(f"no {kind} {name!r}" + (f" for tenant {owner}" if owner else ""), data={"name": name})
            if must_exist is False and live:
                raise Conflict(f"{kind} {name!r} already exists", data={"name": name})
            body = change(dict(current.body) if live and current is not None else None) if change is not None else {}
            values: dict[str, Any] = {"deleted": change is None, "body": body, "updated_at": utcnow(), "updated_by": by[:200]}
            if kind == "secret":
                values["secret"] = secret if change is not None else None
            # Write first, then number the write: on SQLite the first write takes the database's
            # write lock (or fails on a stale snapshot, retried above), so max + 1 read under it
            # is unique; on PostgreSQL the row lock / primary key orders writers of one row.
            if current is None:
                await s.execute(sa.insert(_T).values(owner=owner, kind=kind, name=name, revision=0, **values))
            else:
                await s.execute(sa.update(_T).where(where).values(**values))
            revision = await self._next_revision(s)
            await s.execute(sa.update(_T).where(where).values(revision=revision))
        return Row(owner, kind, name, revision, change is None, body)

    async def _next_revision(self, s: Any) -> int:
        if self.db.is_postgres:
            return int((await s.execute(sa.text(f"SELECT nextval('{SEQUENCE}')"))).scalar_one())
        return int((await s.execute(sa.select(sa.func.coalesce(sa.func.max(_T.c.revision), 0) + 1))).scalar_one())
