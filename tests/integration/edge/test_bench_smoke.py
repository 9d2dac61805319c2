"""benchmarks/sse_fanout.py runs end to end at a tiny size and prints its JSON last line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.parametrize("client", ["c", "python"])
def test_sse_fanout_smoke(client: str) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sse_fanout.py"), "--connections", "20", "--events", "3",
         "--rate", "10", "--clients", "1", "--client-impl", client, "--json"],
        capture_output=True, text=True, timeout=110, check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("connections", "delivered", "lost", "p50_ms", "p99_ms", "rss_mb", "kb_per_conn", "baseline_p99_ms"):
        assert key in result
    assert result["connections"] == 20 and result["client_impl"] == client
    assert result["delivered"] == 60 and result["lost"] == 0
    assert result["baseline_delivered"] == 60
