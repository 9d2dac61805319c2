"""Tool search over the default aggregate's own tools, as a new user of ``make run`` meets them.

benchmarks/builtin_search.py starts the default aggregate and runs the 132 in-scope and 12
out-of-scope queries of benchmarks/data/tool_retrieval/builtin_queries.jsonl through
find_tools' search. The floors sit a little under what the tree measures (benchmarks/RESULTS.md,
"tool search on the built-in servers"): a tool title or description that stops saying what its
tool does, or a ranker that turns built-in tools away, fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts the default aggregate and embeds its tools

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VSM_HOME": str(tmp_path_factory.mktemp("vsm"))}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "builtin_search.py"), "--json"],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    splits: dict[str, dict[str, float]] = json.loads(proc.stdout.strip().splitlines()[-1])["splits"]
    return splits


@pytest.mark.parametrize("split", ["guide", "check"])
def test_the_right_built_in_tool_is_found(figures: dict[str, dict[str, float]], split: str) -> None:
    s = figures[split]
    assert s["n"] == 66
    assert s["recall@5"] >= 0.94, s
    assert s["recall@1"] >= 0.64, s


def test_tasks_no_built_in_tool_does_are_no_match(figures: dict[str, dict[str, float]]) -> None:
    s = figures["all"]
    assert s["out_of_scope"] == 12
    assert s["out_of_scope_no_match"] >= 0.9, s
    # a right tool first but turned away is the ranker's error on this catalog: kept in view
    assert s["in_scope_no_match"] <= 0.30, s
