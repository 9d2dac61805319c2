"""benchmarks/crdt.py still runs (tiny sizes) and reports what RESULTS.md quotes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_crdt_benchmark_smoke() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "crdt.py"), "--beliefs", "400", "--joins", "200", "--json"],
        capture_output=True, text=True, timeout=100, check=True, cwd=ROOT,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["beliefs"] == 400 and result["changed"] == 4
    assert 0 < result["delta_ratio"] < 0.1
    assert result["delta_joins"] > 0 and result["heal_rounds"] >= 1
