"""PUT/GET/HEAD/DELETE /v1/storage over real API keys, driven through httpx.ASGITransport."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from router.edge.storage_http import parse_range, storage_routes
from tests.gate_helpers import gated
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import InvalidArguments
from vsm_mcp.keys import Authenticator
from vsm_mcp.storage.buckets import BucketPolicy, create_bucket
from vsm_mcp.storage.service import service_for
from vsm_mcp.tenants import create_api_key, get_tenant

pytestmark = pytest.mark.anyio


@pytest.fixture
async def edge(storage_env: tuple, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    svc, _a, _b = storage_env
    ctx = ServerContext(settings=svc.settings, db=svc.db, bus=None)  # type: ignore[arg-type]
    ctx.extras["storage.service"] = svc
    auth = Authenticator(svc.db, default_tenant="default", allow_anonymous=False)
    app = gated(Starlette(routes=storage_routes(ctx)), auth, svc.settings)
    keys = {
        "a": (await create_api_key(svc.db, "alpha", ["storage:*"]))[0],
        "a_read": (await create_api_key(svc.db, "alpha", ["storage:read"]))[0],
        "b": (await create_api_key(svc.db, "beta", ["storage"]))[0],
        "tools": (await create_api_key(svc.db, "alpha", ["tools:call"]))[0],
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        yield client, {k: f"Bearer {v}" for k, v in keys.items()}


async def test_streamed_put_get_ranges_head_delete(edge: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, keys = edge
    data = os.urandom(3 * 1024 * 1024 + 17)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    h = {"authorization": keys["a"], "content-type": "application/x-bin"}
    r = await client.put("/v1/storage/files/dir/blob.bin", content=body(), headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
    auth = {"authorization": keys["a_read"]}
    r = await client.get("/v1/storage/files/dir/blob.bin", headers=auth)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "application/x-bin" and r.headers["accept-ranges"] == "bytes"
    assert r.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    for rng, want in [("bytes=0-9", data[:10]), ("bytes=100-", data[100:]), ("bytes=-5", data[-5:]),
                      ("bytes=10-99999999999", data[10:])]:
        r = await client.get("/v1/storage/files/dir/blob.bin", headers=auth | {"range": rng})
        assert r.status_code == 206 and r.content == want, rng
        assert r.headers["content-range"].endswith(f"/{len(data)}")
    r = await client.get("/v1/storage/files/dir/blob.bin", headers=auth | {"range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"
    r = await client.get("/v1/storage/files/dir/blob.bin", headers=auth | {"range": "bytes=0-1,5-6"})
    assert r.status_code == 200 and len(r.content) == len(data)
    r = await client.head("/v1/storage/files/dir/blob.bin", headers=auth)
    assert r.status_code == 200 and r.headers["content-length"] == str(len(data)) and r.content == b""
    r = await client.get("/v1/storage/files?prefix=dir/", headers=auth)
    assert [o["key"] for o in r.json()["objects"]] == ["dir/blob.bin"]
    assert (await client.delete("/v1/storage/files/dir/blob.bin", headers=auth)).status_code == 403
    assert (await client.delete("/v1/storage/files/dir/blob.bin", headers={"authorization": keys["a"]})).status_code == 204
    r = await client.get("/v1/storage/files/dir/blob.bin", headers=auth)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"


async def test_auth_scopes_tenancy_quota_and_bad_keys(
    edge: tuple[httpx.AsyncClient, dict[str, str]], storage_env: tuple
) -> None:
    client, keys = edge
    svc = storage_env[0]
    a = {"authorization": keys["a"]}
    assert (await client.put("/v1/storage/s/k", content=b"secret", headers=a)).status_code == 201
    assert (await client.get("/v1/storage/s/k")).status_code == 401
    assert (await client.get("/v1/storage/s/k", headers={"authorization": keys["tools"]})).status_code == 403
    other = await client.get("/v1/storage/s/k", headers={"authorization": keys["b"]})
    assert other.status_code == 404  # beta has no bucket 's' of alpha's
    tenant = (await get_tenant(svc.db, "alpha")).id
    await create_bucket(svc.db, tenant, "small", BucketPolicy(quota_bytes=1000), svc.backend_names)
    r = await client.put("/v1/storage/small/big", content=b"x" * 5000, headers=a)
    assert r.status_code == 413 and r.json()["error"]["type"] == "quota_exceeded"
    assert (await client.get("/v1/storage/small/big", headers=a)).status_code == 404
    # (httpx removes literal dot segments client-side, so these are the encoded forms a server sees)
    for bad in ["/v1/storage/s/a/%2e%2e/%2e%2e/x", "/v1/storage/s/%2E%2E", "/v1/storage/s/a%00b",
                "/v1/storage/s/a%5c..%5cb", "/v1/storage/s/", "/v1/storage/s//abs"]:
        r = await client.put(bad, content=b"x", headers=a)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_arguments", bad
    newline = await client.put("/v1/storage/s/a%0ab", content=b"x", headers=a)
    assert newline.status_code == 404  # Starlette's path pattern never matches a newline
    rows, _ = await svc.list_objects(tenant, "s")
    assert [r.key for r in rows] == ["k"]
    assert service_for  # the edge shares the service through ctx.extras


def test_parse_range_table() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-4", 10) == (2, 5)
    assert parse_range("bytes=-3", 10) == (7, 10)
    assert parse_range("bytes=-30", 10) == (0, 10)
    assert parse_range("items=1-2", 10) is None
    assert parse_range("bytes=1-2,4-5", 10) is None
    for bad in ["bytes=10-", "bytes=5-3", "bytes=-0"]:
        with pytest.raises(InvalidArguments):
            parse_range(bad, 10)
