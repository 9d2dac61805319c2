"""`vsm-mcp ingest` in a subprocess: a served site and local files, then a re-run that changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.content_site import Site, serve_site
from tests.integration.content.conftest import entries

ROOT = Path(__file__).resolve().parents[3]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSM_")}
    manifest = tmp_path / "content.yaml"  # only what ingest needs: start-up stays short
    manifest.write_text(yaml.safe_dump({"upstreams": entries()}))
    env |= {"VSM_HOME": str(tmp_path / ".vsm"), "VSM_EMBEDDER": "hash:64", "VSM_FETCH_ALLOW": "127.0.0.1/32",
            "VSM_MANIFESTS": str(manifest), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "vsm_mcp.cli", "ingest", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)


@pytest.mark.slow  # four CLI processes, each importing the whole stack
@pytest.mark.timeout(600)  # each start-up is seconds on a quiet machine, tens of seconds on a loaded one
def test_ingest_site_and_files(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("# Bridges\n\nNotes on the bridges of Budapest.\n")
    (tmp_path / "notes" / "b.json").write_text('{"title": "Order", "qty": 3}')
    site = Site(12)
    with serve_site(site) as base:
        first = run(tmp_path, base + "/", "notes", "--depth", "1", "--json")
        assert first.returncode == 0, first.stderr
        results = json.loads(first.stdout)
        files, (job,) = results[:2], results[2:]
        assert [r["created"] for r in files] == [True, True]
        assert job["state"] == "done" and job["documents"] == 13 and job["created"] == 13
        again = run(tmp_path, base + "/", "--depth", "1", "--json")
        assert json.loads(again.stdout)[0]["created"] == 0
    bad = run(tmp_path, "http://169.254.169.254/latest/meta-data/")
    assert bad.returncode == 1 and "169.254.169.254 is a link-local address" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = run(tmp_path, "nowhere.txt")
    assert missing.returncode == 1 and "nowhere.txt: no such file or directory" in missing.stderr
