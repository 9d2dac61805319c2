"""benchmarks/storage_stream.py runs end to end at a tiny size and prints its JSON (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "storage_stream.py"


@pytest.mark.slow
def test_storage_stream_benchmark_smoke() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--size-mb", "4", "--rounds", "1", "--json"], capture_output=True, text=True,
                         timeout=110, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bytes_identical"] is True
    assert {"put_mb_s", "get_mb_s", "cp_mb_s", "ratio_get", "rss_growth_mb"} <= set(result)
