"""Key and tenant lifecycle on a real SQLite database: expiry, rotation with grace, revocation
reaching another authenticator (over the bus, and by its poll without one), disabled and deleted
tenants, and the CLI commands that drive them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.integration.gate.procs import base_env, vsm
from vsm_mcp import keys, migrate
from vsm_mcp.bus import MemoryBus
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database
from vsm_mcp.errors import InvalidArguments, NotFound, Unauthorized
from vsm_mcp.tenant_lifecycle import delete_tenant, set_disabled, tenant_rows
from vsm_mcp.tenants import create_tenant

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    settings = load_settings(home=tmp_path / ".vsm")
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    database = Database(settings)
    await create_tenant(database, "acme")
    yield database
    await database.aclose()


def authn(db: Database, bus: MemoryBus | None = None, poll_s: float = 0.0) -> keys.Authenticator:
    return keys.Authenticator(db, default_tenant="default", allow_anonymous=False, bus=bus, poll_s=poll_s)


async def test_expiry_and_the_cache(db: Database) -> None:
    secret, info = await keys.create_key(db, "acme", ["tools:call"], expires_in=timedelta(seconds=1))
    a = authn(db)
    assert (await a.authenticate(f"Bearer {secret}")).key_id == info.id
    await asyncio.sleep(1.1)
    with pytest.raises(Unauthorized):
        await a.authenticate(f"Bearer {secret}")  # the cached entry did not outlive the key
    assert [k.state for k in await keys.list_keys(db, "acme")] == ["expired"]
    with pytest.raises(InvalidArguments, match="duration"):
        keys.parse_duration("soon")
    assert keys.parse_duration("90d") == timedelta(days=90)


async def test_revocation_reaches_another_replica_by_bus_and_by_poll(db: Database) -> None:
    secret, info = await keys.create_key(db, "acme", ["tools:call"])
    bus = MemoryBus()
    await bus.start()
    by_bus, by_poll = authn(db, bus=bus), authn(db, poll_s=0.1)
    await by_bus.start()
    await by_poll.start()
    try:
        for a in (by_bus, by_poll):
            await a.authenticate(f"Bearer {secret}")
        await keys.revoke_key(db, info.id, bus=bus)
        await asyncio.sleep(0.05)
        with pytest.raises(Unauthorized):
            await by_bus.authenticate(f"Bearer {secret}")
        await asyncio.sleep(0.5)
        with pytest.raises(Unauthorized):
            await by_poll.authenticate(f"Bearer {secret}")
        listed = await keys.list_keys(db, "acme")
        assert listed[0].state == "revoked" and listed[0].last_used_at is not None
    finally:
        await by_bus.aclose()
        await by_poll.aclose()
        await bus.aclose()


async def test_rotation_keeps_the_old_key_for_the_grace(db: Database) -> None:
    old_secret, old = await keys.create_key(db, "acme", ["storage:read"], name="ci")
    new_secret, new, old_after = await keys.rotate_key(db, old.id, grace=timedelta(seconds=1))
    a = authn(db)
    assert (await a.authenticate(f"Bearer {new_secret}")).scopes == frozenset({"storage:read"})
    assert (await a.authenticate(f"Bearer {old_secret}")).key_id == old.id
    assert new.name == "ci" and old_after.expires_at is not None
    await asyncio.sleep(1.1)
    with pytest.raises(Unauthorized):
        await a.authenticate(f"Bearer {old_secret}")
    await a.authenticate(f"Bearer {new_secret}")
    with pytest.raises(NotFound):
        await keys.revoke_key(db, "no-such-key")


async def test_disabled_and_deleted_tenants(db: Database, tmp_path: Path) -> None:
    secret, _ = await keys.create_key(db, "acme", ["tools:call"])
    a = authn(db, poll_s=0.1)
    await a.start()
    try:
        await a.authenticate(f"Bearer {secret}")
        await set_disabled(db, "acme", True)
        await asyncio.sleep(0.5)
        with pytest.raises(Unauthorized):
            await a.authenticate(f"Bearer {secret}")
        assert {r["name"]: r["state"] for r in await tenant_rows(db)}["acme"] == "disabled"
        await set_disabled(db, "acme", False)
        await a.authenticate(f"Bearer {secret}")
    finally:
        await a.aclose()
    from vsm_mcp.storage.service import StorageService

    svc = StorageService(db.settings, db)
    tid = (await keys.resolve_key(db, secret))[0].tenant_id
    await svc.put(tid, "b", "k", b"bytes")
    await svc.aclose()
    gone = await delete_tenant(db, db.settings, "acme")
    assert gone["objects"] == 1 and gone["rows"]["api_keys"] == 1 and gone["rows"]["artifacts"] == 1
    assert "acme" not in {r["name"] for r in await tenant_rows(db)}
    assert not list((tmp_path / ".vsm" / "storage").rglob(f"{tid}/*/*/*"))


def test_cli_keys_and_tenants(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    assert vsm(["migrate"], env).returncode == 0
    assert vsm(["tenants", "create", "acme"], env).returncode == 0
    made = vsm(["keys", "create", "--tenant", "acme", "--scopes", "tools:call", "--expires-in", "30d"], env)
    assert made.returncode == 0, made.stderr
    (row,) = json.loads(vsm(["keys", "list", "--tenant", "acme", "--json"], env).stdout)
    assert row["expires_at"] and row["state"] == "active"
    rotated = vsm(["keys", "rotate", row["id"], "--grace", "10m"], env)
    assert rotated.returncode == 0 and rotated.stdout.strip().startswith("vsm_"), rotated.stderr
    assert vsm(["keys", "revoke", row["id"]], env).returncode == 0
    states = sorted(k["state"] for k in json.loads(vsm(["keys", "list", "--tenant", "acme", "--json"], env).stdout))
    assert states == ["active", "revoked"]
    table = vsm(["keys", "list", "--tenant", "acme"], env).stdout
    assert "revoked" in table and row["prefix"] in table
    bad = vsm(["keys", "revoke", "nope"], env)
    assert bad.returncode == 1 and "no API key" in bad.stderr and "Traceback" not in bad.stderr
    assert vsm(["tenants", "disable", "acme"], env).returncode == 0
    states = {t["name"]: t["state"] for t in json.loads(vsm(["tenants", "list", "--json"], env).stdout)}
    assert states == {"acme": "disabled", "default": "active"}  # migrate made the default tenant
    assert vsm(["tenants", "enable", "acme"], env).returncode == 0
    refused = vsm(["tenants", "delete", "acme"], env)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    assert vsm(["tenants", "delete", "acme", "--yes"], env).returncode == 0
    assert [t["name"] for t in json.loads(vsm(["tenants", "list", "--json"], env).stdout)] == ["default"]
