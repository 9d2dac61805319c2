"""End to end through the content server's tools: a served site ingested, re-ingested, changed, deleted."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from servers.content.tables import ContainerVersion
from tests.content_site import Site, serve_site
from tests.integration.content.conftest import Stack, ToolFailed
from vsm_mcp.storage.lifecycle import sweep_bucket
from vsm_mcp.storage.service import service_for

pytestmark = pytest.mark.anyio
T = "t-one"


async def test_site_ingest_reingest_change_delete(stack: Stack) -> None:
    site = Site(40, pdf_every=5, redirect_every=4)
    with serve_site(site) as base:
        done = await stack.ingest("ingest_url", T, urls=[base + "/"], depth=1)
        assert done["state"] == "done", done
        assert done["failed"] == 0, done["failures"]
        assert done["documents"] == 41  # the index page + 40 documents (10 through a redirect)
        assert done["created"] == 41
        # every document is one container keyed by its final URL, indexed
        for i in (0, 3, 4, 9):
            hit = await stack.call("container_search", T, query=f"doc{i} rev0", k=3, mode="bm25")
            assert hit["results"][0]["source"] == base + site.path(i)
        again = await stack.ingest("ingest_url", T, urls=[base + "/"], depth=1)
        assert again["created"] == 0 and again["unchanged"] == 41
        site.change([1, 2, 4])
        third = await stack.ingest("ingest_url", T, urls=[base + "/"], depth=1)
        assert third["created"] == 3
    hit = (await stack.call("container_search", T, query="doc4 rev1", k=1, mode="bm25"))["results"][0]
    assert hit["source"].endswith(site.path(4)) and hit["version"] == 2
    versions = await stack.call("container_versions", T, container_id=hit["container_id"])
    assert [v["number"] for v in versions["versions"]] == [1, 2]
    got = await stack.call("container_get", T, container_id=hit["container_id"], version=1, include_text=True)
    assert "rev0" in got["version"]["text"] and got["content_type"] == "pdf" and got["language"] == "en"
    assert got["lineage"]["kind"] == "url"

    stats = await stack.raw("search__collection_stats", T, collection="content")
    before = stats.structured_content["documents"]
    out = await stack.call("container_delete", T, container_id=hit["container_id"])
    assert out["deleted"] and out["chunks"] >= 1 and out["blobs"] == 2
    stats = await stack.raw("search__collection_stats", T, collection="content")
    assert stats.structured_content["documents"] == before - 1
    with pytest.raises(ToolFailed, match="not_found"):
        await stack.call("container_get", T, container_id=hit["container_id"])
    svc = service_for(stack.ctx)
    rows, _ = await svc.list_objects(T, "content", prefix=f"c/{hit['container_id']}/")
    assert rows == []
    report = await sweep_bucket(svc, T, "content")
    assert report.orphans_removed == 0
    async with stack.ctx.db.tenant(T) as s:
        left = (await s.execute(select(ContainerVersion).where(ContainerVersion.container_id == hit["container_id"]))).all()
    assert left == []


async def test_ingest_item_idempotent_and_unreadable(stack: Stack) -> None:
    first = await stack.call("ingest_item", T, source="wp:42", text="# Hello\n\nA post about rivers and bridges.",
                             content_type="text/markdown", lineage={"connector": "wordpress", "cursor": "c1"})
    assert first["created"] and first["version"] == 1
    same = await stack.call("ingest_item", T, source="wp:42", text="# Hello\n\nA post about rivers and bridges.  \n",
                            content_type="text/markdown")
    assert not same["created"] and same["version"] == 1 and same["container_id"] == first["container_id"]
    bad = await stack.call("ingest_item", T, source="wp:43", base64="AAECAwQ=", content_type="application/octet-stream")
    assert bad["status"] == "failed" and "binary" in bad["reason"]
    got = await stack.call("container_get", T, container_id=bad["container_id"])
    assert got["status"] == "failed" and "binary" in got["error"]
    c = await stack.call("container_get", T, container_id=first["container_id"])
    assert c["title"] == "Hello" and c["lineage"] == {"kind": "item"}  # the latest ingest's lineage
    v1 = (await stack.call("container_versions", T, container_id=first["container_id"]))["versions"]
    assert [v["lineage"] for v in v1] == [{"kind": "item", "connector": "wordpress", "cursor": "c1"}]


async def test_ingest_file_from_storage(stack: Stack) -> None:
    svc = service_for(stack.ctx)
    await svc.put(T, "inbox", "notes/a.md", b"# Inbox\n\nA note about ferries and harbours.\n", content_type="text/markdown")
    await svc.put(T, "inbox", "notes/b.bin", b"\x00\x01\x02\x03", content_type="application/octet-stream")
    seen: list[Any] = []
    stack.ctx.bus.add_tap(seen.append)
    done = await stack.ingest("ingest_file", T, bucket="inbox", keys=["notes/a.md", "notes/b.bin", "notes/missing"])
    assert done["state"] == "done" and done["created"] == 1 and done["failed"] == 2
    topics = [e.topic for e in seen if e.topic.startswith("ingest.")]
    job = done["job"]
    assert topics[0] == f"ingest.{T}.{job}.started" and topics[-1] == f"ingest.{T}.{job}.finished"
    assert topics.count(f"ingest.{T}.{job}.failed") == 2 and f"ingest.{T}.{job}.progress" in topics
    assert all(e.tenant == T for e in seen if e.topic.startswith("ingest."))
    reasons = " ".join(f["reason"] for f in done["failures"])
    assert "binary" in reasons and "not_found" in reasons
    hit = (await stack.call("container_search", T, query="ferries harbours", k=1))["results"][0]
    assert hit["source"] == "storage:inbox/notes/a.md" and hit["title"] == "Inbox"
    got = await stack.call("container_get", T, container_id=hit["container_id"])
    assert got["lineage"]["bucket"] == "inbox" and got["version"]["blob_key"].startswith(f"c/{hit['container_id']}/")
