"""API-key lifecycle: create (with expiry), list, revoke, rotate; and the authenticator that
turns a presented key into a ``Principal`` without a database round trip per request.

Revocation reaches every replica two ways: the change is published on the bus
(``auth.keys.changed``, each replica's ``Authenticator`` drops the key from its cache at once),
and every ``poll_s`` (1 s) each replica asks the database which keys changed since its last
look — the backstop when the bus is in memory (a CLI in another process) or an event was lost.
An expiring key is cached no longer than it lives; a disabled tenant's keys stop at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text, update
from sqlmodel import select

from vsm_mcp.auth import LOCAL_OPERATOR_SCOPES, Principal, hash_key, new_api_key, validate_scopes
from vsm_mcp.bus import Bus, Subscription
from vsm_mcp.bus.events import Event
from vsm_mcp.db import Database
from vsm_mcp.errors import InvalidArguments, NotFound, Unauthorized
from vsm_mcp.models import ApiKey, Tenant
from vsm_mcp.tenants import ensure_tenant, get_tenant

log = logging.getLogger(__name__)
CHANGED_TOPIC = "auth.keys.changed"


@dataclass(frozen=True)
class KeyInfo:
    """One key as listings show it (never the secret)."""

    id: str
    tenant: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and _aware(self.expires_at) <= datetime.now(UTC):
            return "expired"
        return "active"

    def as_dict(self) -> dict[str, Any]:
        def iso(d: datetime | None) -> str | None:
            return None if d is None else _aware(d).isoformat()

        return {
            "id": self.id, "tenant": self.tenant, "name": self.name, "prefix": self.prefix, "scopes": self.scopes,
            "state": self.state, "created_at": iso(self.created_at), "last_used_at": iso(self.last_used_at),
            "expires_at": iso(self.expires_at), "revoked_at": iso(self.revoked_at),
        }


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=UTC)  # SQLite hands back naive UTC


def parse_duration(raw: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s`` or plain seconds → timedelta; InvalidArguments otherwise."""
    raw = raw.strip().lower()
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    try:
        seconds = float(raw[:-1]) * units[raw[-1]] if raw and raw[-1] in units else float(raw)
    except ValueError:
        seconds = -1
    if not seconds > 0:
        raise InvalidArguments(f"invalid duration {raw!r}: use e.g. 90d, 12h, 30m or 45s")
    return timedelta(seconds=seconds)





async def tenant_name_of(db: Database, tenant_id: str) -> str:
    """The name of the tenant with id ``tenant_id`` (admin tools act for the caller's tenant)."""
    async with db.system() as s:
        tenant = (await s.execute(select(Tenant).where(Tenant.id == tenant_id))).scalars().first()
    if tenant is None:
        raise NotFound(f"no tenant with id {tenant_id!r}")
    return tenant.name


def _info(row: ApiKey, tenant: str) -> KeyInfo:
    return KeyInfo(row.id, tenant, row.name, row.prefix, list(row.scopes), row.created_at, row.last_used_at,
                   row.expires_at, row.revoked_at)


async def create_key(
    db: Database, tenant_name: str, scopes: Iterable[str], *, name: str = "", expires_in: timedelta | None = None,
) -> tuple[str, KeyInfo]:
    """A new key; returns (plaintext shown once, its listing)."""
    clean = validate_scopes(scopes)
    if not clean:
        raise InvalidArguments("at least one scope is required, e.g. --scopes tools:call")
    tenant = await get_tenant(db, tenant_name)
    key, digest = new_api_key()
    expires = datetime.now(UTC) + expires_in if expires_in else None
    row = ApiKey(tenant_id=tenant.id, name=name, prefix=key[:10], key_hash=digest, scopes=clean, expires_at=expires)
    async with db.tenant(tenant.id) as s:
        s.add(row)
    return key, _info(row, tenant.name)


async def list_keys(db: Database, tenant_name: str) -> list[KeyInfo]:
    tenant = await get_tenant(db, tenant_name)
    async with db.tenant(tenant.id) as s:
        rows = (await s.execute(select(ApiKey).order_by(ApiKey.created_at))).scalars().all()  # type: ignore[arg-type]
    return [_info(r, tenant.name) for r in rows]


async def _find(db: Database, key_id: str, tenant_id: str | None) -> tuple[ApiKey, Tenant]:
    """The key row and its tenant; ``tenant_id`` restricts the search (a tenant admin's own keys)."""
    async with db.system() as s:
        tenants = list((await s.execute(select(Tenant))).scalars())
    for tenant in tenants:
        if tenant_id is not None and tenant.id != tenant_id:
            continue
        async with db.tenant(tenant.id) as s:
            row = (await s.execute(select(ApiKey).where(ApiKey.id == key_id))).scalars().first()
        if row is not None:
            return row, tenant
    raise NotFound(f"no API key with id {key_id!r} (see: vsm-mcp keys list --tenant NAME)")


async def revoke_key(db: Database, key_id: str, *, bus: Bus | None = None, tenant_id: str | None = None) -> KeyInfo:
    """Revoke at once (idempotent); tells every replica over the bus."""
    row, tenant = await _find(db, key_id, tenant_id)
    now = datetime.now(UTC)
    if row.revoked_at is None:
        async with db.tenant(tenant.id) as s:
            await s.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=now, updated_at=now))  # type: ignore[arg-type]
        row.revoked_at = now
    await announce(bus, tenant.id, [key_id], "revoked")
    return _info(row, tenant.name)


async def rotate_key(
    db: Database, key_id: str, *, grace: timedelta, bus: Bus | None = None, tenant_id: str | None = None,
) -> tuple[str, KeyInfo, KeyInfo]:
    """A new secret with the old key's name and scopes; the old one keeps working for ``grace``.

    Returns (new plaintext, new key, old key)."""
    row, tenant = await _find(db, key_id, tenant_id)
    if row.revoked_at is not None:
        raise InvalidArguments(f"API key {key_id!r} is revoked; create a new one instead")
    now = datetime.now(UTC)
    ends = now + grace
    if row.expires_at is not None and _aware(row.expires_at) < ends:
        ends = _aware(row.expires_at)
    remaining = None if row.expires_at is None else _aware(row.expires_at) - now
    key, new = await create_key(db, tenant.name, row.scopes, name=row.name, expires_in=remaining)
    async with db.tenant(tenant.id) as s:
        await s.execute(update(ApiKey).where(ApiKey.id == key_id).values(expires_at=ends, updated_at=now))  # type: ignore[arg-type]
    row.expires_at = ends
    await announce(bus, tenant.id, [key_id], "rotated")
    return key, new, _info(row, tenant.name)


async def announce(bus: Bus | None, tenant_id: str, key_ids: list[str], change: str) -> None:
    """Publish ``auth.keys.changed``; a bus that is down only delays the change to the next poll."""
    if bus is None:
        return
    try:
        await bus.publish(Event(topic=CHANGED_TOPIC, tenant=tenant_id, type=change, data={"keys": key_ids}))
    except Exception:  # the database is the record; replicas also poll it
        log.warning("could not announce %s of keys %s on the bus; replicas see it at their next poll", change, key_ids)


class Authenticator:
    """Bearer API key → Principal, cached per key for ``ttl`` seconds (never past the key's expiry).

    ``start()`` follows ``auth.keys.changed`` and polls for changed keys and disabled tenants
    every ``poll_s``; ``authenticate(header, anonymous=...)`` is the hot path: a dict lookup."""

    def __init__(
        self, db: Database, *, default_tenant: str, allow_anonymous: bool,
        anonymous_scopes: Iterable[str] = LOCAL_OPERATOR_SCOPES, ttl: float = 30.0, bus: Bus | None = None, poll_s: float = 1.0,
    ) -> None:
        self.db = db
        self.default_tenant = default_tenant
        self.allow_anonymous = allow_anonymous
        self.anonymous_scopes = frozenset(anonymous_scopes)
        self.ttl = ttl
        self.bus = bus
        self.poll_s = poll_s
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._anonymous: Principal | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Subscription | None = None
        self._since = datetime.now(UTC)

    async def authenticate(self, authorization: str | None, *, anonymous: bool = True) -> Principal:
        """``authorization`` is the raw header (``Bearer vsm_…``) or None; ``anonymous`` says whether
        this caller may be anonymous at all (the gate decides by the peer)."""
        if not authorization:
            if not (self.allow_anonymous and anonymous):
                raise Unauthorized("an API key is required: send 'Authorization: Bearer vsm_…'")
            if self._anonymous is None:
                tenant = await ensure_tenant(self.db, self.default_tenant)
                self._anonymous = Principal(tenant_id=tenant.id, scopes=self.anonymous_scopes, tenant_name=tenant.name)
            return self._anonymous
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("malformed Authorization header: expected 'Bearer vsm_…'")
        key = key.strip()
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal, expires = await resolve_key(self.db, key)
        until = now + self.ttl
        if expires is not None:
            until = min(until, now + (expires - datetime.now(UTC)).total_seconds())
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (until, principal)
        self._touch(principal)
        return principal

    def forget(self, key_ids: Iterable[str] = (), tenant_ids: Iterable[str] = (),
               live_tenants: set[str] | None = None) -> int:
        """Drop cached keys by id, by tenant, or whose tenant is not in ``live_tenants``."""
        ids, tenants = set(key_ids), set(tenant_ids)

        def stale(p: Principal) -> bool:
            return p.key_id in ids or p.tenant_id in tenants or (live_tenants is not None and p.tenant_id not in live_tenants)

        gone = [k for k, (_, p) in self._cache.items() if stale(p)]
        for k in gone:
            self._cache.pop(k, None)
        if self._anonymous is not None and stale(self._anonymous):
            self._anonymous = None
        return len(gone)

    def _touch(self, principal: Principal) -> None:
        """Note the key's last use (once per cache fill, off the request's path)."""
        task = asyncio.get_running_loop().create_task(_mark_used(self.db, principal))
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def start(self) -> None:
        if self.bus is not None:
            self._sub = await self.bus.subscribe([CHANGED_TOPIC, "tenant.changed"])
            self._tasks.append(asyncio.create_task(self._follow(self._sub), name="keys-follow"))
        if self.poll_s > 0:
            self._tasks.append(asyncio.create_task(self._poll(), name="keys-poll"))

    async def _follow(self, sub: Subscription) -> None:
        with contextlib.suppress(Exception):
            async for event in sub:
                if event.topic == CHANGED_TOPIC:
                    self.forget(key_ids=[str(k) for k in event.data.get("keys", [])])
                else:
                    self.forget(tenant_ids=[event.tenant])

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            if not self._cache and self._anonymous is None:
                self._since = datetime.now(UTC)
                continue
            try:
                since = self._since - timedelta(seconds=5)  # overlap: a row committed late is still seen
                started = datetime.now(UTC)
                keys, live = await changed_since(self.db, since)
                self.forget(keys, live_tenants=live)
                self._since = started
            except Exception as exc:  # the database being away must not kill the poller
                log.debug("key poll failed: %s", exc)

    async def aclose(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.aclose()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()


async def resolve_key(db: Database, key: str) -> tuple[Principal, datetime | None]:
    """The principal a live key proves and when it expires, or Unauthorized (unknown, revoked,
    expired, or its tenant disabled — one answer for all, so a caller learns nothing more)."""
    digest = hash_key(key)
    async with db.system() as s:
        if db.is_postgres:
            sql = "SELECT id, tenant_id, scopes, expires_at, tenant_name FROM vsm_resolve_api_key(:h)"
        else:
            sql = (
                "SELECT k.id, k.tenant_id, k.scopes, k.expires_at, t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id "
                "WHERE k.key_hash = :h AND k.revoked_at IS NULL AND t.disabled_at IS NULL"
            )
        row = (await s.execute(text(sql), {"h": digest})).first()
    if row is None:
        raise Unauthorized("invalid, revoked or expired API key")
    expires = row[3]
    if isinstance(expires, str):
        expires = datetime.fromisoformat(expires)
    if expires is not None:
        expires = _aware(expires)
        if expires <= datetime.now(UTC):
            raise Unauthorized("invalid, revoked or expired API key")
    scopes = row[2]
    if isinstance(scopes, str):
        scopes = json.loads(scopes)
    return Principal(tenant_id=row[1], scopes=frozenset(scopes), key_id=row[0], tenant_name=row[4] or ""), expires


async def changed_since(db: Database, since: datetime) -> tuple[list[str], set[str]]:
    """(ids of keys revoked or changed since ``since``, ids of the tenants that are enabled)."""
    async with db.system() as s:
        if db.is_postgres:
            keys = (await s.execute(text("SELECT id FROM vsm_keys_changed_since(:t)"), {"t": since})).all()
        else:
            keys = (await s.execute(
                text("SELECT id FROM api_keys WHERE revoked_at > :t OR updated_at > :t"), {"t": since.replace(tzinfo=None)}
            )).all()
        live = (await s.execute(select(Tenant.id).where(Tenant.disabled_at.is_(None)))).all()  # type: ignore[union-attr]
    return [r[0] for r in keys], {r[0] for r in live}


async def _mark_used(db: Database, principal: Principal) -> None:
    with contextlib.suppress(Exception):  # bookkeeping only: never fails a request
        async with db.tenant(principal.tenant_id) as s:
            await s.execute(
                update(ApiKey).where(ApiKey.id == principal.key_id).values(last_used_at=datetime.now(UTC))  # type: ignore[arg-type]
            )


async def resolve_api_key(db: Database, key: str) -> Principal:
    """The principal a presented key proves, or Unauthorized."""
    return (await resolve_key(db, key))[0]
