"""Tool search over the default aggregate (the built-in servers of manifests/default.yaml), as a
new user of ``make run`` meets it, from one router started once for the module:

* issue 26's four queries: the intended tool first, or an honest no_match;
* benchmarks/builtin_search.py's query set (132 in-scope, 12 out-of-scope tasks, guide and check
  halves) above floors a little under what the tree measures (benchmarks/RESULTS.md, "tool
  search on the built-in servers"): a tool title or description that stops saying what its tool
  does, or a ranker that turns built-in tools away, fails here.

The router runs in a child process: the default aggregate starts DBOS-backed servers whose
process-wide state would outlive this test and break later ones in the same process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # builds the int8 MiniLM and embeds the built-in servers' tools

QUERIES = [
    "remember a fact about the user",
    "ask a language model a question",
    "block deletes outside business hours",
    "send an email",
]
SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from benchmarks.builtin_search import DEFAULT_QUERIES, answers, load, summary

issue = [{"id": q, "query": q, "relevant": [], "split": "issue", "limit": 5} for q in json.loads(sys.argv[2])]
rows = asyncio.run(answers([*load(DEFAULT_QUERIES), *issue], Path(sys.argv[1])))
found = {r["query"]: {"tools": list(zip(r["ranked"], r["scores"])), "no_match": r["no_match"]}
         for r in rows if r["split"] == "issue"}
print("RESULT " + json.dumps({"issue": found, "splits": summary([r for r in rows if r["split"] != "issue"])}))
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("vsm")
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(root), "VSM_HOME": str(home), "VSM_EMBEDDER": "minilm"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(home), json.dumps(QUERIES)],
        capture_output=True, text=True, timeout=300, env=env, cwd=root, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out: dict[str, Any] = json.loads(line[len("RESULT "):])
    return out


@pytest.fixture(scope="module")
def answers(result: dict[str, Any]) -> dict[str, dict[str, object]]:
    issue: dict[str, dict[str, object]] = result["issue"]
    return issue


@pytest.fixture(scope="module")
def figures(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    splits: dict[str, dict[str, float]] = result["splits"]
    return splits


@pytest.mark.parametrize(
    ("query", "tool"),
    [
        ("remember a fact about the user", "beliefs__belief_assert"),
        ("ask a language model a question", "llm__llm_complete"),
        # "block" governs "deletes" (router/registry/lexicon.toml): a rule about deletes is written
        # with policy_put, whose description says policies block calls by hour of the day.
        ("block deletes outside business hours", "policy__policy_put"),
    ],
)
def test_the_intended_tool_comes_first(answers: dict[str, dict[str, object]], query: str, tool: str) -> None:
    found = answers[query]
    tools = found["tools"]
    assert isinstance(tools, list) and tools[0][0] == tool, tools
    assert found["no_match"] is False


def test_a_task_no_tool_does_is_no_match_with_the_nearest_listed(answers: dict[str, dict[str, object]]) -> None:
    found = answers["send an email"]
    tools = found["tools"]
    assert found["no_match"] is True
    assert isinstance(tools, list) and len(tools) == 5 and all(0.0 <= score < 0.5 for _, score in tools)


@pytest.mark.parametrize("split", ["guide", "check"])
def test_the_right_built_in_tool_is_found(figures: dict[str, dict[str, float]], split: str) -> None:
    s = figures[split]
    assert s["n"] == 66
    assert s["recall@5"] >= 0.94, s
    assert s["recall@1"] >= 0.75, s


def test_tasks_no_built_in_tool_does_are_no_match(figures: dict[str, dict[str, float]]) -> None:
    s = figures["all"]
    assert s["out_of_scope"] == 12
    assert s["out_of_scope_no_match"] >= 0.9, s
    # a right tool first but turned away is the ranker's error on this catalog: kept in view
    assert s["in_scope_no_match"] <= 0.18, s
