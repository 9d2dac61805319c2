"""The shipped example manifests and client configs parse, and point at endpoints that exist."""

from __future__ import annotations

import json
from pathlib import Path

from router.upstreams.manifest import load_manifests

ROOT = Path(__file__).resolve().parents[3]


def test_example_manifests_validate() -> None:
    specs = load_manifests([ROOT / "manifests" / "examples"])
    kinds = {s.kind for s in specs}
    assert {"stdio", "http"} <= kinds


def test_client_configs_use_our_endpoints() -> None:
    oc = json.loads((ROOT / "examples" / "opencode.json").read_text())
    assert oc["mcp"]["vsm"]["url"].startswith("http://127.0.0.1:8765/mcp")
    assert oc["mcp"]["vsm-local"]["command"] == ["vsm-mcp", "stdio"]
    omo = json.loads((ROOT / "examples" / "oh-my-opencode" / ".mcp.json").read_text())
    assert omo["mcpServers"]["vsm"]["url"].split("?")[0].endswith("/mcp")
    assert omo["mcpServers"]["vsm-local"]["args"] == ["stdio"]
