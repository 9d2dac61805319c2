"""Each way around the gate found in issue 18, through a whole running router: written first as
failing tests, then fixed. A refused request must leave no side effect."""

from __future__ import annotations

import json

import pytest

from router.gate.route import ungated_routes
from tests.integration.gate.conftest import Gateway

pytestmark = pytest.mark.anyio

EVIL = "http://evil.example.com"


async def exists(gw: Gateway, bucket: str, key: str) -> bool:
    r = await gw.http.get(f"/v1/storage/{bucket}/{key}", headers={"authorization": gw.keys["acme_admin"]})
    return r.status_code == 200


async def test_every_route_is_behind_the_gate(gateway: Gateway) -> None:
    assert ungated_routes(gateway.app.routes) == []


async def test_cross_site_simple_requests_leave_no_side_effect(gateway: Gateway) -> None:
    gw = gateway
    body = json.dumps({"arguments": {"bucket": "b1", "key": "k", "text": "x"}})
    # a page on another site posting as the anonymous loopback caller, the way a browser would
    for headers, why in (({"origin": EVIL, "content-type": "text/plain"}, "Origin"),
                         ({"origin": EVIL, "content-type": "application/json"}, "Origin"),
                         ({"content-type": "text/plain"}, "cross-site"),  # no Origin (older browsers, redirects)
                         ({"content-type": "application/x-www-form-urlencoded"}, "cross-site")):
        r = await gw.http.post("/v1/tools/storage__storage_put/call", content=body, headers=headers)
        assert r.status_code == 403 and why in r.json()["error"]["message"], (headers, r.text)
    r = await gw.http.post("/v1/tools/storage__storage_put/call", data={"arguments": "{}"}, headers={"origin": EVIL})
    assert r.status_code == 403
    assert not await exists(gw, "b1", "k")
    # an object that exists is not deleted by a forged request, whatever its method
    put = await gw.http.put("/v1/storage/docs/a.txt", content=b"keep me",
                            headers={"authorization": gw.keys["acme_admin"], "content-type": "application/octet-stream"})
    assert put.status_code == 201, put.text
    for method in ("DELETE", "POST"):
        if method == "DELETE":
            r = await gw.http.delete("/v1/storage/docs/a.txt", headers={"origin": EVIL, "authorization": gw.keys["acme_admin"]})
        else:
            r = await gw.http.post("/v1/tools/storage__storage_delete/call", headers={"origin": EVIL, "content-type": "text/plain"},
                                   content=json.dumps({"arguments": {"bucket": "docs", "key": "a.txt"}}))
        assert r.status_code == 403, r.text
    assert await exists(gw, "docs", "a.txt")
    # DNS rebinding: a hostile Host reads nothing
    r = await gw.http.get("/v1/storage/docs/a.txt", headers={"host": "evil.example.com", "authorization": gw.keys["acme_admin"]})
    assert r.status_code == 403 and b"keep me" not in r.content
    r = await gw.http.get("/v1/events", headers={"host": "evil.example.com"})
    assert r.status_code == 403
    r = await gw.http.post("/mcp", json={}, headers={"origin": EVIL})
    assert r.status_code == 403


async def test_storage_routes_meet_the_tenant_policy(gateway: Gateway) -> None:
    gw = gateway
    policy = 'policy "no-deletes"\ndefault allow\ndeny nodel "deletes are off" when tool.name == "storage_delete"\n'
    r = await gw.call("policy__policy_put", "acme_admin", name="no-deletes", source=policy)
    assert r.status_code == 200 and not r.json().get("isError"), r.text
    h = {"authorization": gw.keys["acme_admin"], "content-type": "application/octet-stream"}
    assert (await gw.http.put("/v1/storage/docs/x", content=b"x", headers=h)).status_code == 201
    r = await gw.http.delete("/v1/storage/docs/x", headers=h)
    assert r.status_code == 403 and r.json()["error"]["type"] == "policy_denied", r.text
    assert r.json()["error"]["rule"] == "nodel"
    assert await exists(gw, "docs", "x")
    r = await gw.call("storage__storage_delete", "acme_admin", bucket="docs", key="x")
    assert r.status_code == 403 and r.json()["error"]["type"] == "policy_denied"
    # another tenant's policy is its own
    g = {"authorization": gw.keys["globex"], "content-type": "application/octet-stream"}
    assert (await gw.http.put("/v1/storage/docs/x", content=b"x", headers=g)).status_code == 201
    assert (await gw.http.delete("/v1/storage/docs/x", headers=g)).status_code == 204


async def test_openai_routes_need_an_llm_scope(gateway: Gateway) -> None:
    gw = gateway
    chat = {"model": "main", "messages": [{"role": "user", "content": "hi"}]}
    read = {"authorization": gw.keys["acme_read"]}
    r = await gw.http.post("/v1/chat/completions", json=chat, headers=read)
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error", r.text
    assert "llm:call" in r.json()["error"]["message"]
    assert (await gw.http.post("/v1/embeddings", json={"model": "e", "input": "x"}, headers=read)).status_code == 403
    assert (await gw.http.get("/v1/models", headers=read)).status_code == 403
    r = await gw.http.get("/v1/models", headers={"authorization": gw.keys["acme_llm"]})
    assert r.status_code == 200, r.text


async def test_anonymous_is_no_admin_and_only_a_direct_loopback_peer(gateway: Gateway) -> None:
    gw = gateway
    r = await gw.call("llm__llm_cache_purge", tenant=gw.tenants["globex"])
    assert r.status_code == 403, r.text  # cross-tenant admin needs llm:admin, which anonymous never has
    r = await gw.call("storage__bucket_create", name="anon-bucket")
    assert r.status_code == 403
    # behind a proxy on this host the peer is loopback, but the caller is not: a key is required
    r = await gw.http.post("/v1/tools/storage__storage_list/call", json={"arguments": {"bucket": "docs"}},
                           headers={"x-forwarded-for": "203.0.113.7"})
    assert r.status_code == 401
    r = await gw.http.get("/v1/tools", headers={"forwarded": "for=203.0.113.7"})
    assert r.status_code == 401
    # what anonymous may do by default: tool calls and reads, in the default tenant
    r = await gw.call("storage__storage_put", bucket="mine", key="k", text="v")
    assert r.status_code == 403 and "storage:write" in r.text
    r = await gw.call("storage__storage_list", bucket="mine")
    assert r.status_code == 200, r.text
