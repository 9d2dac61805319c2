"""`vsm-mcp call` runs one call in-process through the pipeline; errors are one line, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.router.conftest import UPSTREAM


def test_call_prints_the_result_and_fails_cleanly(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        f"upstreams:\n  - {{name: s, kind: stdio, command: {json.dumps(sys.executable)}, "
        f"args: [{json.dumps(str(UPSTREAM))}, --name, s]}}\n",
        encoding="utf-8",
    )
    cmd = [sys.executable, "-m", "vsm_mcp.cli", "call", "--manifest", str(manifest)]
    ok = subprocess.run([*cmd, "s__add", "--json", '{"a": 40, "b": 2}'], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["structuredContent"] == {"result": 42}
    bad = subprocess.run([*cmd, "s__nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "unknown tool 's__nope'" in bad.stderr and "Traceback" not in bad.stderr
    wrong = subprocess.run([*cmd, "s__add", "--json", '{"a": "x", "b": 1}'], capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 1 and "invalid argument 'a'" in wrong.stderr
