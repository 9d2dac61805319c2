"""Ingest jobs as durable workflows (DBOS on SQLite): a 1,000-document site end to end, exactly N new
versions after N changes, and a SIGKILL mid-ingest resumed with no duplicate and nothing missing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from servers.search.chunking import chunk_text
from tests.content_site import Site, serve_site
from tests.integration.content.conftest import Stack, ToolFailed, content_settings, entries, open_stack

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]


async def durable_stack(tmp_path: Path, **over: Any) -> AsyncIterator[Stack]:
    async for stack in open_stack(content_settings(tmp_path, **over), durable_role="test", durable_queues=["ingest"]):
        assert stack.runtime.spine is not None, "the content server declares the 'ingest' queue"
        yield stack


def check_store(db_file: Path, expected_sources: set[str]) -> dict[str, int]:
    """Every source has exactly one container, indexed at its current version, with exactly the
    chunks of that version's text (no duplicate, none missing) and one stored blob per version."""
    conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT c.id, c.source, c.current_sha, c.indexed_sha, v.text FROM content_containers c "
            "JOIN content_versions v ON v.container_id = c.id AND v.sha256 = c.current_sha"
        ).fetchall()
        sources = [r[1] for r in rows]
        assert len(sources) == len(set(sources)) and set(sources) == expected_sources
        assert all(r[2] == r[3] for r in rows), "a container is not indexed at its current version"
        chunks = dict(conn.execute("SELECT doc_id, count(*) FROM search_chunks GROUP BY doc_id").fetchall())
        assert set(chunks) == {r[0] for r in rows}, "chunks of no container, or a container without chunks"
        for cid, _src, _sha, _isha, text in rows:
            assert chunks[cid] == len(chunk_text(text)), f"container {cid}: {chunks[cid]} chunks"
        dupes = conn.execute(
            "SELECT count(*) FROM (SELECT collection_id, doc_id, chunk FROM search_chunks GROUP BY 1, 2, 3 HAVING count(*) > 1)"
        ).fetchone()[0]
        assert dupes == 0
        versions = conn.execute("SELECT count(*) FROM content_versions").fetchone()[0]
        blobs = conn.execute("SELECT count(*) FROM artifacts WHERE bucket = 'content'").fetchone()[0]
        assert blobs == versions
        return {"containers": len(rows), "versions": versions, "chunks": sum(chunks.values())}
    finally:
        conn.close()


async def test_small_site_durably(tmp_path: Path) -> None:
    site = Site(30, pdf_every=6)
    async for stack in durable_stack(tmp_path):
        with serve_site(site) as base:
            done = await stack.ingest("ingest_url", "t-d", urls=[base + "/"], depth=1)
            assert done["state"] == "done" and done["created"] == 31 and done["failed"] == 0
            site.change([2, 5, 8])
            again = await stack.ingest("ingest_url", "t-d", urls=[base + "/"], depth=1)
            assert again["created"] == 3 and again["unchanged"] == 28
            status = await stack.call("ingest_status", "t-d", job=again["job"])
            assert status["state"] == "done" and status["documents"] == 31
            with pytest.raises(ToolFailed, match="not_found"):  # another tenant's job does not exist for it
                await stack.call("ingest_status", "t-other", job=again["job"])
    check_store(tmp_path / ".vsm" / "vsm.db", {base + "/"} | set(site.urls(base)))


@pytest.mark.slow  # 1,000 documents through fetch, normalize, storage and the index
async def test_thousand_documents_then_ten_changes(tmp_path: Path) -> None:
    site = Site(1000)
    async for stack in durable_stack(tmp_path, content_batch_size=32):
        with serve_site(site) as base:
            done = await stack.ingest("ingest_url", "t-k", urls=[base + "/"], depth=1, max_documents=1001)
            assert done["state"] == "done" and done["failed"] == 0, done["failures"]
            assert done["documents"] == 1001 and done["created"] == 1001
            changed = list(range(5, 1000, 100))
            site.change(changed)
            again = await stack.ingest("ingest_url", "t-k", urls=[base + "/"], depth=1, max_documents=1001)
            assert again["created"] == 10 and again["unchanged"] == 991
        for i in changed[:3]:
            hit = (await stack.call("container_search", "t-k", query=f"doc{i} rev1", k=1, mode="bm25"))["results"][0]
            assert hit["source"].endswith(site.path(i)) and hit["version"] == 2
    stats = check_store(tmp_path / ".vsm" / "vsm.db", {base + "/"} | set(site.urls(base)))
    assert stats["versions"] == 1011


def cli(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    manifest = tmp_path / "content.yaml"
    manifest.write_text(yaml.safe_dump({"upstreams": entries()}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSM_")}
    env |= {"VSM_HOME": str(tmp_path / ".vsm"), "VSM_EMBEDDER": "hash:64", "VSM_FETCH_ALLOW": "127.0.0.1/32",
            "VSM_MANIFESTS": str(manifest), "VSM_CONTENT_BATCH_SIZE": "8", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "vsm_mcp.cli", "ingest", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def containers(db_file: Path) -> int:
    if not db_file.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=1)
        try:
            return int(conn.execute("SELECT count(*) FROM content_containers").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not migrated yet
        return 0


@pytest.mark.slow  # two CLI processes and a 300-document crawl
def test_sigkill_mid_ingest_then_resume(tmp_path: Path) -> None:
    site = Site(300)
    db_file = tmp_path / ".vsm" / "vsm.db"
    with serve_site(site) as base:
        first = cli(tmp_path, base + "/", "--depth", "1", "--max-documents", "301")
        try:
            deadline = time.monotonic() + 240
            while containers(db_file) < 40:  # killed once part of the crawl is in
                assert first.poll() is None, first.communicate()[1]
                assert time.monotonic() < deadline, "the ingest made no progress"
                time.sleep(0.2)
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
        partial = containers(db_file)
        assert partial < 301, "the ingest finished before it could be killed"
        second = cli(tmp_path, "--resume", "--json")
        out, errors = second.communicate(timeout=400)
        assert second.returncode == 0, errors
        (job,) = json.loads(out)
        assert job["state"] == "done" and job["failed"] == 0
        assert job["documents"] == 301  # the recovered workflow's totals: every document once
    stats = check_store(db_file, {base + "/"} | set(site.urls(base)))
    assert stats["containers"] == 301 and stats["versions"] == 301
