"""Issue 26's four queries on the default aggregate (the built-in servers of manifests/default.yaml),
as a new user would type them: the intended tool first, or an honest no_match.

The router runs in a child process: the default aggregate starts DBOS-backed servers whose
process-wide state would outlive this test and break later ones in the same process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
from router.local import running_router
from vsm_mcp import migrate
from vsm_mcp.config import load_settings

async def main() -> None:
    settings = load_settings(home=sys.argv[1], embedder="minilm")
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    async with running_router(settings) as (runtime, principal):
        out = {}
        for query in json.loads(sys.argv[2]):
            found = await runtime.tool_search.find(principal, query, limit=5)
            out[query] = {"tools": [[h.record.public_name, h.score] for h in found.hits], "no_match": found.no_match}
    print("RESULT " + json.dumps(out))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    home = tmp_path_factory.mktemp("vsm")
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(root), "VSM_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(home), json.dumps(QUERIES)],
        capture_output=True, text=True, timeout=300, env=env, cwd=root, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, dict[str, object]] = json.loads(line[len("RESULT "):])
    return result


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
