"""A tiny run of benchmarks/tool_search_scale.py, so the script keeps working (not a measurement).

~3-5 s here. It timed out in CI once (110 s, no output): the script then migrated a database and
started and stopped a whole router app (DBOS, workers) per catalog size, and the same CI run had
other app shutdowns hang. It now starts one app for all sizes, and ``--deadline`` makes a hung run
print its threads and pending asyncio tasks and exit before this test's timeout kills it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DEV = Path("/work/shared/bench/tool_retrieval/tools.jsonl")


@pytest.mark.skipif(not DEV.is_file(), reason="the tool-retrieval dev set is not on this machine")
def test_scale_benchmark_smoke(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "tool_search_scale.py"), "--sizes", "60,120",
           "--queries", "4", "--rounds", "1", "--embedder", "hash", "--deadline", "90", "--json"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=110, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["60"]["tools"] == 60 and result["120"]["tools"] == 120
    assert result["120"]["find_tools_p50_ms"] > 0 and result["120"]["search_warm_p95_ms"] > 0
