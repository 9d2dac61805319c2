"""Tenant and API-key administration (the CLI and the auth step use these)."""

from __future__ import annotations

import json
import re
import time

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from vsm_mcp.auth import ANONYMOUS_SCOPES, Principal, hash_key, new_api_key, validate_scopes
from vsm_mcp.db import Database
from vsm_mcp.errors import Conflict, InvalidArguments, NotFound, Unauthorized
from vsm_mcp.models import ApiKey, Tenant

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def check_tenant_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidArguments(
            f"invalid tenant name {name!r}: use 1-63 lowercase letters, digits, '.', '_' or '-'"
        )
    return name


async def get_tenant(db: Database, name: str) -> Tenant:
    async with db.system() as s:
        tenant = (await s.execute(select(Tenant).where(Tenant.name == name))).scalars().first()
    if tenant is None:
        raise NotFound(f"no tenant named {name!r} (create it with: vsm-mcp tenants create {name})")
    return tenant


async def create_tenant(db: Database, name: str) -> Tenant:
    check_tenant_name(name)
    try:
        async with db.system() as s:
            if (await s.execute(select(Tenant).where(Tenant.name == name))).first() is not None:
                raise Conflict(f"tenant {name!r} already exists")
            tenant = Tenant(name=name)
            s.add(tenant)
    except IntegrityError:  # inserted by a concurrent caller between our check and our commit
        raise Conflict(f"tenant {name!r} already exists") from None
    return tenant


async def ensure_tenant(db: Database, name: str) -> Tenant:
    try:
        return await get_tenant(db, name)
    except NotFound:
        try:
            return await create_tenant(db, name)
        except Conflict:  # created concurrently
            return await get_tenant(db, name)


async def list_tenants(db: Database) -> list[Tenant]:
    async with db.system() as s:
        return list((await s.execute(select(Tenant).order_by(Tenant.name))).scalars())


async def create_api_key(db: Database, tenant_name: str, scopes: list[str], name: str = "") -> tuple[str, ApiKey]:
    """Create a key; returns (plaintext, row). The plaintext is not recoverable later."""
    clean = validate_scopes(scopes)
    if not clean:
        raise InvalidArguments("at least one scope is required, e.g. --scopes tools:call")
    tenant = await get_tenant(db, tenant_name)
    key, digest = new_api_key()
    row = ApiKey(tenant_id=tenant.id, name=name, prefix=key[:10], key_hash=digest, scopes=clean)
    async with db.tenant(tenant.id) as s:
        s.add(row)
    return key, row


async def resolve_api_key(db: Database, key: str) -> Principal:
    """The principal a presented key proves, or Unauthorized.

    On PostgreSQL the app role cannot see api_keys without a tenant, so the lookup goes
    through the SECURITY DEFINER function ``vsm_resolve_api_key`` (migrations/); it returns
    only the one matching, unrevoked row.
    """
    digest = hash_key(key)
    async with db.system() as s:
        if db.is_postgres:
            row = (
                await s.execute(
                    text("SELECT id, tenant_id, scopes FROM vsm_resolve_api_key(:h)"), {"h": digest}
                )
            ).first()
        else:
            row = (
                await s.execute(
                    text("SELECT id, tenant_id, scopes FROM api_keys WHERE key_hash = :h AND revoked_at IS NULL"),
                    {"h": digest},
                )
            ).first()
    if row is None:
        raise Unauthorized("invalid or revoked API key")
    scopes = row[2]
    if isinstance(scopes, str):
        scopes = json.loads(scopes)
    return Principal(tenant_id=row[1], scopes=frozenset(scopes), key_id=row[0])


class Authenticator:
    """Bearer API key → Principal, with a short in-memory cache so auth costs no database
    round trip on the hot path (a revoked key stops working within ``ttl`` seconds)."""

    def __init__(self, db: Database, *, default_tenant: str, allow_anonymous: bool, ttl: float = 30.0) -> None:
        self.db = db
        self.default_tenant = default_tenant
        self.allow_anonymous = allow_anonymous
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._anonymous: Principal | None = None

    async def authenticate(self, authorization: str | None) -> Principal:
        """``authorization`` is the raw header value (``Bearer vsm_…``) or None."""
        if not authorization:
            if not self.allow_anonymous:
                raise Unauthorized("an API key is required: send 'Authorization: Bearer vsm_…'")
            if self._anonymous is None:
                tenant = await ensure_tenant(self.db, self.default_tenant)
                self._anonymous = Principal(
                    tenant_id=tenant.id, scopes=frozenset(ANONYMOUS_SCOPES), tenant_name=tenant.name
                )
            return self._anonymous
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("malformed Authorization header: expected 'Bearer vsm_…'")
        key = key.strip()
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        principal = await resolve_api_key(self.db, key)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + self.ttl, principal)
        return principal
