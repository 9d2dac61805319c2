"""``POST /v1/tools/{name}/call``: one tool call over plain HTTP, through the full pipeline."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.router.conftest import serve_router, stdio_entry

pytestmark = pytest.mark.anyio


async def test_rest_call_results_and_errors() -> None:
    async with serve_router([stdio_entry("s")]) as (base, _app):
        async with httpx.AsyncClient(base_url=base, timeout=60) as h:
            ok = await h.post("/v1/tools/s__add/call", json={"arguments": {"a": 2, "b": 5}})
            assert ok.status_code == 200 and ok.json()["structuredContent"] == {"result": 7}
            failed = await h.post("/v1/tools/s__fail/call", json={"arguments": {"message": "nope"}})
            assert failed.status_code == 200 and failed.json()["isError"] is True
            unknown = await h.post("/v1/tools/s__missing/call", json={"arguments": {}})
            assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found"
            bad = await h.post("/v1/tools/s__add/call", json={"arguments": {"a": "x", "b": 1}})
            assert bad.status_code == 400 and "'a'" in bad.json()["error"]["message"]
            garbage = await h.post("/v1/tools/s__add/call", content=b"{not json", headers={"content-type": "application/json"})
            assert garbage.status_code == 400 and "not JSON" in garbage.json()["error"]["message"]
            shape = await h.post("/v1/tools/s__add/call", json={"arguments": [1, 2]})
            assert shape.status_code == 400
            denied = await h.post(
                "/v1/tools/s__add/call", json={"arguments": {"a": 1, "b": 1}}, headers={"Authorization": "Bearer vsm_wrong"}
            )
            assert denied.status_code == 401
