"""Upstream registry operations on the embedded database: validation first (one line each, nothing
written), then revisioned writes; secrets are write-only."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import pytest

from router.upstreams.admin_ops import UpstreamAdmin
from router.upstreams.definitions import GLOBAL, parse_definition, resolve_secrets
from router.upstreams.store import RegistryStore
from tests.ports import free_port
from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database
from vsm_mcp.errors import Conflict, InvalidArguments, NotFound
from vsm_mcp.ssrf import AddressGuard, AllowList, FetchRefused

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def admin() -> AsyncIterator[UpstreamAdmin]:
    settings = load_settings()
    await anyio.to_thread.run_sync(migrate.upgrade, settings.migration_database_url)
    db = Database(settings)
    try:
        yield UpstreamAdmin(RegistryStore(db), reserved=lambda: {"storage"})
    finally:
        await db.aclose()


def _stdio(name: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "stdio", "command": sys.executable, "args": ["-c", "pass"], **extra}



@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"name": "x", "kind": "ftp", "url": "ftp://h"}, "kind: unknown kind 'ftp'"),
        ({"name": "x", "kind": "stdio"}, "command: a stdio upstream needs a command"),
        ({"name": "x", "kind": "http"}, "url: an http upstream needs an http:// or https:// url"),
        ({"name": "a__b", "kind": "stdio", "command": "true"}, "name: must not contain '__'"),
        ({"name": "storage", "kind": "stdio", "command": sys.executable}, "duplicate upstream name 'storage'"),
        ({"name": "x", "kind": "stdio", "command": "/no/such/program"}, "command: '/no/such/program' is not an executable"),
        ({"name": "x", "kind": "http", "url": "http://127.0.0.1:{port}/mcp"}, "url: cannot reach http://127.0.0.1:"),
        ({"name": "x", "kind": "http", "url": "https://h/mcp", "headers": {"X-Api-Key": "s3cr3t"}},
         "headers.X-Api-Key: a credential must be a ${VAR} or ${secret:NAME} reference"),
        ({"name": "x", "kind": "http", "url": "https://u:pw@h/mcp"}, "url: a password in the URL is not allowed"),
        ({"name": "x", "kind": "stdio", "command": "true", "args": ["--token=abc"]}, "args[0]: looks like a credential"),
        ({"name": "x", "kind": "stdio", "command": "true", "args": ["${secret:T}"]}, "args: a stored secret cannot go"),
        ({"name": "x", "kind": "http", "url": "https://h/mcp?k=${secret:T}"}, "url: a stored secret cannot go"),
        ({"name": "x", "kind": "stdio", "command": "true", "colour": "red"}, "unknown field 'colour'"),
        ({"name": "x", "kind": "stdio", "command": "true", "auth": {"bearer": "${secret:NOPE}"}}, "no stored secret 'NOPE'"),
    ],
)
async def test_bad_definitions_get_one_line_and_change_nothing(
    admin: UpstreamAdmin, definition: dict[str, Any], message: str
) -> None:
    await admin.add(GLOBAL, _stdio("keep"))
    before = await admin.store.load()
    if "url" in definition:
        definition = {**definition, "url": definition["url"].replace("{port}", str(free_port()))}
    with pytest.raises(InvalidArguments) as exc:
        await admin.add(GLOBAL, definition)
    assert message in exc.value.message
    assert "\n" not in exc.value.message
    assert await admin.store.load() == before


async def test_duplicate_in_registry_and_tenant_rules(admin: UpstreamAdmin) -> None:
    await admin.add(GLOBAL, _stdio())
    with pytest.raises(InvalidArguments, match="duplicate upstream name 'echo' \\(already in the global registry\\)"):
        await admin.add(GLOBAL, _stdio())
    with pytest.raises(InvalidArguments, match="a tenant may register http upstreams only"):
        await admin.add("tenant-1", _stdio("mine"))
    with pytest.raises(InvalidArguments, match="duplicate upstream name 'echo'"):
        await admin.add("tenant-1", {"name": "echo", "kind": "http", "url": "https://h/mcp"})


async def test_update_remove_readd_and_revisions(admin: UpstreamAdmin) -> None:
    first = await admin.add(GLOBAL, _stdio(timeout=5))
    updated = await admin.update(GLOBAL, "echo", {"timeout": 9, "pool_size": 2})
    assert updated.revision > first.revision and updated.body["timeout"] == 9 and updated.body["pool_size"] == 2
    reset = await admin.update(GLOBAL, "echo", {"pool_size": None})
    assert "pool_size" not in reset.body and reset.body["timeout"] == 9
    with pytest.raises(InvalidArguments, match="pool_size"):
        await admin.update(GLOBAL, "echo", {"pool_size": 0})
    disabled = await admin.set_enabled(GLOBAL, "echo", False)
    assert disabled.body["enabled"] is False
    assert (await admin.list(GLOBAL))["upstreams"][0]["enabled"] is False
    gone = await admin.remove(GLOBAL, "echo")
    assert gone.deleted and gone.revision > disabled.revision
    assert (await admin.list(GLOBAL))["upstreams"] == []
    with pytest.raises(NotFound):
        await admin.remove(GLOBAL, "echo")
    again = await admin.add(GLOBAL, _stdio())  # a tombstone does not block the name
    assert again.revision > gone.revision and not again.deleted
    fp = await admin.store.fingerprint()
    assert fp == (1, again.revision)


async def test_create_race_loser_gets_conflict(admin: UpstreamAdmin) -> None:
    store = admin.store
    await store.write(GLOBAL, "upstream", "r", lambda _c: {"kind": "stdio", "command": "true"}, must_exist=False)
    with pytest.raises(Conflict, match="already exists"):
        await store.write(GLOBAL, "upstream", "r", lambda _c: {"kind": "stdio", "command": "true"}, must_exist=False)


async def test_secrets_are_write_only(admin: UpstreamAdmin) -> None:
    await admin.set_secret(GLOBAL, "GH_TOKEN", "ghp_verysecret")
    row = await admin.add(GLOBAL, _stdio(env={"GITHUB_TOKEN": "${secret:GH_TOKEN}", "MODE": "fast"}))
    listing = await admin.list(GLOBAL)
    assert "ghp_verysecret" not in repr(listing) and "ghp_verysecret" not in repr(await admin.store.load())
    assert listing["secrets"] == ["GH_TOKEN"]
    assert listing["upstreams"][0]["env"] == {"GITHUB_TOKEN": "${secret:GH_TOKEN}", "MODE": "fast"}
    spec = parse_definition({"name": row.name, **row.body})
    resolved = resolve_secrets(spec, await admin.store.secrets(GLOBAL, {"GH_TOKEN"}))
    assert resolved.process_env()["GITHUB_TOKEN"] == "ghp_verysecret"
    with pytest.raises(InvalidArguments, match="non-empty"):
        await admin.set_secret(GLOBAL, "EMPTY", "")


async def test_overrides_validate(admin: UpstreamAdmin) -> None:
    ok = await admin.set_override(GLOBAL, "gh", "search_issues", {"name": "issues", "pin": {"repo": "a/b"}})
    assert ok.body == {"name": "issues", "pin": {"repo": "a/b"}}
    more = await admin.set_override(GLOBAL, "gh", "search_issues", {"hidden": True})
    assert more.body == {"name": "issues", "pin": {"repo": "a/b"}, "hidden": True}
    with pytest.raises(InvalidArguments, match="is already the name of another overridden tool"):
        await admin.set_override(GLOBAL, "gh", "other", {"name": "issues"})
    with pytest.raises(InvalidArguments, match="meta-tool"):
        await admin.set_override(GLOBAL, "gh", "other", {"name": "find_tools"})
    with pytest.raises(InvalidArguments, match="name: must be 1-64"):
        await admin.set_override(GLOBAL, "gh", "other", {"name": "bad name"})


async def test_a_tenants_http_upstream_passes_the_ssrf_guard_before_anything_is_sent() -> None:
    """A tenant admin may not point the gateway into the operator's network; the operator may."""
    settings = load_settings()
    await anyio.to_thread.run_sync(migrate.upgrade, settings.migration_database_url)
    db = Database(settings)
    connections: list[object] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def count(stream: anyio.abc.SocketStream) -> None:
        connections.append(stream)
        await stream.aclose()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, count)
            guarded = UpstreamAdmin(RegistryStore(db), guard=AddressGuard(AllowList()), probe=False)
            before = await guarded.store.load()
            for url, why in [(f"http://127.0.0.1:{port}/mcp", "127.0.0.1 is a loopback address"),
                             (f"http://localhost:{port}/mcp", "(localhost resolves to ")]:
                with pytest.raises(FetchRefused) as refused:
                    await guarded.add("tenant-1", {"name": "inside", "kind": "http", "url": url})
                assert why in refused.value.message and "VSM_FETCH_ALLOW" in refused.value.message
                assert "\n" not in refused.value.message
            assert await guarded.store.load() == before
            # the operator's registry is not guarded; an allow-listed endpoint is allowed for a tenant
            await guarded.add(GLOBAL, {"name": "ops-inside", "kind": "http", "url": f"http://127.0.0.1:{port}/mcp"})
            allowed = UpstreamAdmin(RegistryStore(db), guard=AddressGuard(AllowList.parse([f"127.0.0.1:{port}"])), probe=False)
            await allowed.add("tenant-1", {"name": "inside", "kind": "http", "url": f"http://127.0.0.1:{port}/mcp"})
            await anyio.sleep(0.1)
            assert connections == []  # probe=False: nothing connects while validating
            tg.cancel_scope.cancel()
    finally:
        await listener.aclose()
        await db.aclose()
