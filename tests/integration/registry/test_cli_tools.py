"""`vsm-mcp tools list|search` against a real (builtin) upstream loaded from a manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vsm_mcp.cli import app

MANIFEST = """upstreams:
  - {name: dyn, kind: builtin, target: "tests.integration.registry.dynamic_server:build"}
  - {name: sec, kind: builtin, target: "tests.integration.registry.dynamic_server:build_secret", tags: [policy]}
"""


@pytest.fixture
def manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("VSM_EMBEDDER", "hash")
    path = tmp_path / "m.yaml"
    path.write_text(MANIFEST)
    return str(path)


def test_tools_list_and_search(manifest: str) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["tools", "list", "--manifest", manifest])
    assert listed.exit_code == 0, listed.output
    assert "dyn__add" in listed.output and "sec__rotate_master_password" in listed.output
    only = runner.invoke(app, ["tools", "list", "--server", "sec", "--manifest", manifest])
    assert "sec__rotate_master_password" in only.output and "dyn__add" not in only.output
    found = runner.invoke(app, ["tools", "search", "rotate the master password", "-n", "1", "--manifest", manifest])
    assert found.exit_code == 0, found.output
    assert "sec__rotate_master_password" in found.output and "dyn__add" not in found.output


def test_tools_search_names_a_bad_mode(manifest: str) -> None:
    result = CliRunner().invoke(app, ["tools", "search", "x", "--mode", "fuzzy", "--manifest", manifest])
    assert result.exit_code == 1 and "--mode" in result.output


@pytest.mark.filterwarnings(r"ignore:Items? .* (is|are) using the `ReadOnly` qualifier")  # litellm's import
def test_tools_search_says_when_a_model_reranked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.integration.llm_cdn.fake_openai import fake_openai
    from tests.integration.registry.test_rerank import entries, models, reverse

    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"upstreams": entries()}))
    with fake_openai() as (base, state):
        state.answer = reverse
        for key, value in {"VSM_EMBEDDER": "hash", "VSM_LLM_MODELS": models(base), "VSM_LLM_RETRIES": "0",
                           "VSM_TOOL_SEARCH_RERANK_MODEL": "rank",
                           "VSM_TOOL_SEARCH_RERANK_TIMEOUT_S": "60"}.items():  # a fresh process imports litellm
            monkeypatch.setenv(key, value)
        found = CliRunner().invoke(app, ["tools", "search", "add two integers sum", "-n", "3", "--manifest", str(path)])
    assert found.exit_code == 0, found.output
    assert "rerank: reranked, LLM cache miss (order by the model)" in found.output and state.calls["rank"] == 1
