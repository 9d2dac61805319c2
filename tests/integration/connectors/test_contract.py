"""One contract, every connector: the same scenarios against each product's local API.

* an initial sync of 500 items over several pages makes 500 containers;
* 10 edits and 3 deletions at the source → the next incremental sync creates exactly 10 new
  versions and deletes exactly those 3 containers (nothing else changes);
* expired credentials (401) → one clear line naming the connector, the cursor unchanged, and
  the next sync (credentials renewed) carries on from that cursor;
* a 429 storm is ridden out (Retry-After / the product's reset header honoured).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.asgi_server import serve_asgi
from tests.fakes.cms_apis import (
    FakeContentful,
    FakeDrive,
    FakeDrupal,
    FakeGhost,
    FakeSanity,
    FakeStrapi,
    FakeWordPress,
)
from tests.integration.connectors.conftest import Stack, connector_settings, open_stack
from tests.integration.content.conftest import ToolFailed

pytestmark = pytest.mark.anyio
N = 500
TENANT = "t-conn"

FAKES = {"wordpress": FakeWordPress, "contentful": FakeContentful, "gdrive": FakeDrive, "ghost": FakeGhost,
         "strapi": FakeStrapi, "drupal": FakeDrupal,
         "sanity": FakeSanity}


@contextmanager
def env(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(params=sorted(FAKES))
def fake(request: pytest.FixtureRequest) -> Any:
    return FAKES[request.param]()


@pytest.fixture
async def running(tmp_path: Path, fake: Any) -> AsyncIterator[tuple[Stack, Any, str]]:
    async with serve_asgi(fake.app()) as base:
        async for stack in open_stack(connector_settings(tmp_path)):
            yield stack, fake, base


async def containers(stack: Stack, prefix: str) -> dict[str, tuple[str, int]]:
    """source → (container id, current version) of the containers a connector made."""
    async with stack.runtime.ctx.db.tenant(TENANT) as s:
        rows = (await s.execute(text("SELECT source, id, current_version FROM content_containers WHERE source LIKE :p"),
                                {"p": prefix + "%"})).all()
    return {r[0]: (r[1], r[2]) for r in rows}


async def run_contract(stack: Stack, fake: Any, base: str, n: int) -> None:
    ids = fake.seed(n)
    server = fake.server
    with env(fake.credentials_env()):
        await stack.call(f"{server}__connector_add", name="src", **fake.connector_args(base))
        first = await stack.sync(server, "src")
        assert first["state"] == "idle" and first["last_error"] is None, first
        assert first["counts"]["created"] == n and first["counts"]["pages"] >= 4, first["counts"]
        assert first["items"] == n
        before = await containers(stack, "src:")
        assert set(before) == {f"src:{i}" for i in ids}

        # 10 edits and 3 deletions → exactly those change
        edited, deleted = ids[10:20], ids[25:28]
        fake.edit(edited)
        fake.delete(deleted)
        second = await stack.sync(server, "src")
        assert second["counts"]["created"] == 10 and second["counts"]["deleted"] == 3, second["counts"]
        after = await containers(stack, "src:")
        assert set(before) - set(after) == {f"src:{i}" for i in deleted}
        bumped = {s for s in after if after[s][1] != before[s][1]}
        assert bumped == {f"src:{i}" for i in edited}
        assert all(after[s][0] == before[s][0] for s in after)  # same containers, new versions

        # expired credentials: a clear line naming the connector, the cursor unchanged
        cursor = second["cursor"]
        fake.expire()
        failed = await stack.sync(server, "src")
        assert failed["state"] == "failed" and failed["cursor"] == cursor
        assert "connector 'src'" in failed["last_error"] and "401" in failed["last_error"]
        assert "\n" not in failed["last_error"]

    # renewed credentials, a 429 storm on the way: ridden out, and the edit made meanwhile arrives
    fake.edit(ids[30:31])
    fake.storm(6)
    with env(fake.credentials_env()):
        third = await stack.sync(server, "src")
    assert third["state"] == "idle" and third["last_error"] is None, third
    assert third["counts"]["created"] == 1 and third["counts"]["deleted"] == 0
    assert fake.throttled == 6

    # the read tools over the synced containers
    got = await stack.call(f"{server}__{server}_get", key=ids[30], connector="src")
    assert got["external_id"] == ids[30] and "Edited" in got["version"]["text"]
    hits = await stack.call(f"{server}__{server}_search", query="subject number 12", k=5)
    assert hits["results"] and all(h["connector"] == "src" for h in hits["results"])


@pytest.mark.slow  # 500 items per connector through the whole pipeline (~30 s each on the shared machine)
async def test_contract(running: tuple[Stack, Any, str]) -> None:
    await run_contract(*running, N)


async def test_contract_small_pages(tmp_path: Path, fake: Any) -> None:
    """The same scenarios on 40 items, 10 per page: several pages, seconds per connector."""
    async with serve_asgi(fake.app()) as base:
        async for stack in open_stack(connector_settings(tmp_path, connector_page_size=10)):
            await run_contract(stack, fake, base, 40)


@pytest.mark.postgres
async def test_contract_on_postgres(pg_owner_url: str, pg_app_url: str, tmp_path: Path) -> None:
    """On PostgreSQL as the non-owner role (RLS on connectors and connector_items)."""
    fake = FakeWordPress()
    settings = connector_settings(tmp_path, connector_page_size=10, database_url=pg_app_url,
                                  migration_database_url=pg_owner_url)
    async with serve_asgi(fake.app()) as base:
        async for stack in open_stack(settings, durable=False):
            await run_contract(stack, fake, base, 40)
            other = await stack.call("cms__connector_list", tenant="t-other")
            assert other["connectors"] == []


async def test_credentials_only_as_references(stack: Stack) -> None:
    with pytest.raises(ToolFailed, match="environment reference"):
        await stack.call("cms__connector_add", name="leak", type="wordpress", base_url="http://127.0.0.1:1",
                         credentials={"username": "admin", "password": "secret"})
    await stack.call("cms__connector_add", name="ok", type="wordpress", base_url="http://127.0.0.1:1",
                     credentials={"username": "${NOPE_USER_X}", "password": "${NOPE_PW_X}"})
    st = await stack.sync("cms", "ok")
    assert st["state"] == "failed" and "NOPE_USER_X" in st["last_error"] and "connector 'ok'" in st["last_error"]
    listed = await stack.call("cms__connector_list")
    assert listed["connectors"][0]["credentials"] == {"username": "${NOPE_USER_X}", "password": "${NOPE_PW_X}"}


async def test_the_ssrf_guard_applies(tmp_path: Path) -> None:
    fake = FakeWordPress()
    fake.seed(3)
    async with serve_asgi(fake.app()) as base:
        async for stack in open_stack(connector_settings(tmp_path, fetch_allow=[]), durable=False):
            await stack.call("cms__connector_add", name="local", type="wordpress", base_url=base)
            st = await stack.sync("cms", "local")
            assert st["state"] == "failed" and "VSM_FETCH_ALLOW" in st["last_error"]
            assert st["cursor"] is None and fake.requests == 0
