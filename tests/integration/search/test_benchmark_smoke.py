"""The vector benchmark script runs end to end at a tiny size and prints its JSON last line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_vector_benchmark_smoke(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[3] / "benchmarks" / "vector_search.py"
    out = subprocess.run(
        [sys.executable, str(script), "--n", "3000", "--dim", "16", "--queries", "20", "--text-n", "0",
         "--backends", "usearch,pq", "--json"],
        capture_output=True, text=True, timeout=110, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    rows = report["structured"]["results"]
    assert {r["backend"] for r in rows} == {"usearch", "pq"}
    for row in rows:
        assert 0.0 <= row["recall@10"] <= 1.0 and row["p95_ms"] >= row["p50_ms"] > 0
    assert max(r["recall@10"] for r in rows if r["backend"] == "usearch") >= 0.9
    assert report["structured"]["brute_p50_ms"] > 0 and report["goals"]["at_n"] == 3000
