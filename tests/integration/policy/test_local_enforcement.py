"""Tenant policies are enforced on the local entry points too (`vsm-mcp call`, `vsm-mcp stdio`),
not only on the HTTP app — they share one RouterRuntime but were wired separately."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

POLICY = 'default allow\ndeny no_list "listing is off" when tool.name == "storage_list"'


def call(tool: str, args: dict[str, object], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vsm_mcp.cli", "call", tool, "--json", json.dumps(args)],
        capture_output=True, text=True, timeout=180, cwd=cwd, env=dict(os.environ),
    )


def test_vsm_mcp_call_obeys_tenant_policy(tmp_path: Path) -> None:
    before = call("storage__storage_list", {"bucket": "b"}, tmp_path)  # reaches the tool (no bucket yet)
    assert "no bucket 'b'" in before.stdout + before.stderr and "denied by policy" not in before.stderr
    put = call("policy__policy_put", {"name": "nolist", "source": POLICY}, tmp_path)
    assert put.returncode == 0 and '"isError": false' in put.stdout, put.stdout + put.stderr
    denied = call("storage__storage_list", {"bucket": "b"}, tmp_path)
    assert denied.returncode != 0
    assert "denied by policy 'nolist' rule 'no_list'" in denied.stderr
    assert "Traceback" not in denied.stderr
    other = call("storage__bucket_usage", {"bucket": "b"}, tmp_path)
    assert other.returncode == 0 and "denied by policy" not in other.stderr, other.stderr
