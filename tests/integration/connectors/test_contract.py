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
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.asgi_server import serve_asgi
from tests.fakes.cms_apis import FakeContentful, FakeDrive, FakeWordPress
from tests.integration.connectors.conftest import Stack, ToolFailed, connector_settings, open_stack

pytestmark = pytest.mark.anyio
N = 500

FAKES = {"wordpress": FakeWordPress, "contentful": FakeContentful, "gdrive": FakeDrive}


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


def containers(db: Path, prefix: str) -> dict[str, tuple[str, int]]:
    """source → (container id, current version) of the containers a connector made."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT source, id, current_version FROM content_containers WHERE source LIKE ?",
                            (prefix + "%",)).fetchall()
    finally:
        conn.close()
    return {r[0]: (r[1], r[2]) for r in rows}


@pytest.mark.slow
async def test_contract(running: tuple[Stack, Any, str], tmp_path: Path) -> None:
    stack, fake, base = running
    db = tmp_path / ".vsm" / "vsm.db"
    ids = fake.seed(N)
    server = fake.server
    with env(fake.credentials_env()):
        await stack.call(f"{server}__connector_add", name="src", **fake.connector_args(base))
        first = await stack.sync(server, "src")
        assert first["state"] == "idle" and first["last_error"] is None, first
        assert first["counts"]["created"] == N and first["counts"]["pages"] >= 5, first["counts"]
        assert first["items"] == N
        before = containers(db, "src:")
        assert set(before) == {f"src:{i}" for i in ids}

        # 10 edits and 3 deletions → exactly those change
        edited, deleted = ids[10:20], ids[100:103]
        fake.edit(edited)
        fake.delete(deleted)
        second = await stack.sync(server, "src")
        assert second["counts"]["created"] == 10 and second["counts"]["deleted"] == 3, second["counts"]
        after = containers(db, "src:")
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
    hits = await stack.call(f"{server}__{server}_search", query="subject number 42", k=5)
    assert hits["results"] and all(h["connector"] == "src" for h in hits["results"])


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
