"""The benchmark script runs end to end with tiny sizes (its figures are not asserted on)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from tests.integration.llm_cdn.fake_openai import FakeState

pytestmark = pytest.mark.anyio
SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "llm_cdn.py"


async def test_benchmark_smoke(providers_up: tuple[str, FakeState, str, FakeState], tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("llm_cdn_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = argparse.Namespace(requests=20, latency_ms=1.0, hits=20, miss_pairs=2, embedder="hash", pairs=8)
    base, state, _, _ = providers_up
    out = await bench.run(args, base, state, tmp_path)
    assert out["dedup_upstream_calls"] == 1
    assert out["requests"] == 20 and out["near_miss_pairs"] + out["equivalent_pairs"] == 8
    assert {"hit_rate", "upstream_calls", "hit_p50_ms", "hit_p99_ms", "miss_overhead_ms",
            "semantic_hit_rate", "false_hit_rate"} <= set(out)
    pairs = bench.labelled_pairs()
    assert len(pairs) >= 200 and sum(1 for *_, eq in pairs if eq) == len(pairs) // 2
