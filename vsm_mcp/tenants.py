"""Tenants and API keys: create, look up (the CLI and the auth step use these).

Key lifecycle (expiry, revoke, rotate) and the ``Authenticator`` live in ``vsm_mcp.keys``; tenant
lifecycle (disable, enable, delete) in ``vsm_mcp.tenant_lifecycle``."""

from __future__ import annotations

import re

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from vsm_mcp.auth import new_api_key, validate_scopes
from vsm_mcp.db import Database
from vsm_mcp.errors import Conflict, InvalidArguments, NotFound
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
