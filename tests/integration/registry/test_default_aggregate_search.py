"""Issue 26's four queries on the default aggregate (the built-in servers of manifests/default.yaml),
as a new user would type them: the intended tool first, or an honest no_match."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from router.local import running_router
from vsm_mcp import migrate
from vsm_mcp.config import load_settings

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # builds the int8 MiniLM and embeds ~35 tools

FIRST = [
    ("remember a fact about the user", "beliefs__belief_assert"),
    ("ask a language model a question", "llm__llm_complete"),
]


async def test_issue_queries_on_the_default_aggregate(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, embedder="minilm")
    await anyio.to_thread.run_sync(migrate.upgrade, settings.migration_database_url)
    async with running_router(settings) as (runtime, principal):
        search = runtime.tool_search
        for query, tool in FIRST:
            found = await search.find(principal, query, limit=5)
            ranked = [(h.record.public_name, round(h.score, 3)) for h in found.hits]
            assert ranked[0][0] == tool and not found.no_match, (query, ranked)
        nothing = await search.find(principal, "send an email", limit=5)
        assert nothing.no_match
        assert len(nothing.hits) == 5 and all(0.0 <= h.score < 0.5 for h in nothing.hits)  # nearest still listed
        block = await search.find(principal, "block deletes outside business hours", limit=5)
    # Outside the router's task group: an xfail raised inside it would arrive wrapped in a group.
    if block.hits[0].record.public_name != "policy__policy_put" or block.no_match:
        pytest.xfail(
            "issue 26 gap: the delete tools (cep_rule_delete, policy_delete) share the query's words, "
            f"policy_put none, and MiniLM does not link 'block' to writing a policy: {block.hits[0].record.public_name}"
        )
