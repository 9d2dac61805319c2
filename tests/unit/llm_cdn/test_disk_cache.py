from __future__ import annotations

import time
from pathlib import Path

import pytest

from servers.llm_cdn.cache import DiskBackend, Entry

pytestmark = pytest.mark.anyio


NOW = time.time()


def _entry(model: str = "m", created: float = NOW, ttl: float = 3600, size: int = 10) -> Entry:
    return Entry(body={"text": "x" * size}, model=model, kind="chat", created=created, expires=created + ttl, tokens=3)


async def test_tenant_scoped_get_put(tmp_path: Path) -> None:
    b = DiskBackend(tmp_path, 1 << 20)
    await b.put("t1", "k", _entry())
    assert (await b.get("t1", "k")) == _entry()
    assert await b.get("t2", "k") is None
    await b.aclose()


async def test_purge_by_tenant_model_and_age(tmp_path: Path) -> None:
    b = DiskBackend(tmp_path, 1 << 20)
    await b.put("t1", "k1", _entry("m1", created=NOW - 500))
    await b.put("t1", "k2", _entry("m2", created=NOW - 500))
    await b.put("t1", "k3", _entry("m1", created=NOW - 100))
    await b.put("t2", "k1", _entry("m1", created=NOW - 500))
    assert await b.purge("t1", "m1", older_than=NOW - 200) == 1
    assert await b.get("t1", "k1") is None and await b.get("t1", "k3") is not None
    assert await b.purge("t1", None, None) == 2
    assert await b.get("t2", "k1") is not None
    assert await b.purge(None, None, None) == 1
    await b.aclose()


async def test_size_is_bounded(tmp_path: Path) -> None:
    limit = 1 << 20
    b = DiskBackend(tmp_path, limit)
    for i in range(300):
        await b.put("t", f"k{i}", _entry(size=20_000))
    assert b.usage()["bytes"] <= limit * 1.2  # diskcache culls after each set: bounded, not exact
    assert await b.get("t", "k299") is not None  # newest survive
    assert await b.get("t", "k0") is None  # oldest stored went first
    await b.aclose()


async def test_inflight_claim_is_exclusive_until_released(tmp_path: Path) -> None:
    b = DiskBackend(tmp_path, 1 << 20)
    assert await b.claim("t", "k", "A", 60)
    assert not await b.claim("t", "k", "B", 60)
    assert await b.busy("t", "k")
    await b.release("t", "k", "B")  # not the owner: no effect
    assert await b.busy("t", "k")
    await b.release("t", "k", "A")
    assert not await b.busy("t", "k") and await b.claim("t", "k", "B", 60)
    await b.aclose()
