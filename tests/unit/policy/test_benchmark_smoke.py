"""benchmarks/policy_eval.py runs end to end with tiny sizes and prints its JSON last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_policy_eval_benchmark_smoke() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "policy_eval.py"), "--n", "600", "--rounds", "2", "--json"],
        capture_output=True, text=True, timeout=110, check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "policy_eval" and result["rules"] == 20
    assert result["mismatches_in_2000"] == 0
    assert result["wasm"]["decisions_per_s"] > 0 and result["interpreter"]["p99_us"] > 0
    assert result["authorize_no_policies_p50_us"] > 0
