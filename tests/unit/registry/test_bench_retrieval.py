"""The retrieval benchmark: metric definitions and the CLI's JSON contract."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vsm_mcp.cli import app
from vsm_mcp.cli.bench_retrieval import load_tools, metrics
from vsm_mcp.errors import InvalidArguments

TOOLS = [
    {"server": "fs", "name": "read_file", "description": "Read the contents of a file.",
     "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}, "source": "x"},
    {"server": "fs", "name": "write_file", "description": "Write content into a file.",
     "input_schema": {"type": "object", "properties": {}}, "source": "x"},
    {"server": "git", "name": "git_log", "description": "Show the commit history.",
     "input_schema": {"type": "object", "properties": {}}, "source": "x"},
]
QUERIES = [
    {"id": "q1", "query": "show me what a file contains", "relevant": ["fs/read_file"]},
    {"id": "q2", "query": "commit history of the repo", "relevant": ["git/git_log"]},
    {"id": "q3", "query": "put text in a file", "relevant": ["fs/write_file", "fs/read_file"]},
]


def write_set(tmp_path: Path) -> tuple[Path, Path]:
    tools, queries = tmp_path / "tools.jsonl", tmp_path / "queries.jsonl"
    tools.write_text("\n".join(json.dumps(t) for t in TOOLS) + "\n")
    queries.write_text("\n".join(json.dumps(q) for q in QUERIES) + "\n")
    return tools, queries


def test_metrics_follow_the_readme_definitions() -> None:
    m = metrics(["a", "b", "c"], ["b"])
    assert m == {"recall@1": 0.0, "recall@5": 1.0, "mrr": 0.5, "ndcg@10": pytest.approx(1 / math.log2(3))}
    two = metrics(["x", "a", "y", "b"], ["a", "b"])
    assert two["recall@1"] == 0.0 and two["recall@5"] == 1.0 and two["mrr"] == 0.5
    idcg = 1 + 1 / math.log2(3)
    assert two["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / idcg)
    assert metrics(["a"], ["a", "b"])["recall@1"] == 0.5  # not renormalised
    assert metrics([], ["a"]) == {"recall@1": 0.0, "recall@5": 0.0, "mrr": 0.0, "ndcg@10": 0.0}


def test_tools_load_under_router_public_names(tmp_path: Path) -> None:
    tools, _ = write_set(tmp_path)
    by_server = load_tools(tools)
    assert [r.public_name for r in by_server["fs"]] == ["fs__read_file", "fs__write_file"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"server": "x", "name": "y"}\nnot json\n')
    with pytest.raises(InvalidArguments, match="bad.jsonl:2"):
        load_tools(bad)


def test_cli_prints_all_modes_as_json_last_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSM_EMBEDDER", "hash")
    tools, queries = write_set(tmp_path)
    result = CliRunner().invoke(app, ["bench", "retrieval", "--tools", str(tools), "--queries", str(queries), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["n_tools"] == 3 and data["n_queries"] == 3
    for mode in ("bm25", "embedding", "hybrid", "hybrid_fusion_only"):
        assert {"recall@1", "recall@5", "mrr", "ndcg@10", "p50_ms", "p95_ms"} <= set(data[mode])
        assert 0.0 <= data[mode]["mrr"] <= 1.0
    # Three tools, recall@5 covers everything the mode ranks; the embedding mode ranks all.
    assert data["embedding"]["recall@5"] == 1.0
    assert 0.0 <= data["hybrid"]["in_scope_no_match"] <= 1.0


OUT_OF_SCOPE = [{"id": "o1", "query": "order a pizza", "relevant": []}, {"id": "o2", "query": "play jazz", "relevant": []}]


def test_cli_cross_validates_and_fits_the_ranker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSM_EMBEDDER", "hash")
    tools, queries = write_set(tmp_path)
    oos = tmp_path / "oos.jsonl"
    oos.write_text("\n".join(json.dumps(q) for q in OUT_OF_SCOPE) + "\n")
    base = ["bench", "retrieval", "--tools", str(tools), "--queries", str(queries), "--out-of-scope", str(oos)]
    result = CliRunner().invoke(app, [*base, "--cv", "--folds", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["n_out_of_scope"] == 2 and len(data["folds"]) == 2
    assert data["ranker"]["overall"]["n"] == 3 and set(data["ranker"]["per_class"]) == {"plain", "product", "multi"}
    assert 0.0 <= data["no_match"]["out_of_scope_no_match"] <= 1.0 and 0.0 <= data["calibration"]["ece"] <= 1.0
    fitted = tmp_path / "ranker.json"
    result = CliRunner().invoke(app, [*base, "--fit", str(fitted)])
    assert result.exit_code == 0, result.output
    model = json.loads(fitted.read_text())
    assert model["meta"]["queries"] == 3 and model["meta"]["out_of_scope"] == 2 and len(model["tool_weights"]) == len(model["tool_features"])


def test_cli_rejects_out_of_scope_queries_with_tools(tmp_path: Path) -> None:
    tools, queries = write_set(tmp_path)
    oos = tmp_path / "oos.jsonl"
    oos.write_text(json.dumps({"id": "o1", "query": "x", "relevant": ["fs/read_file"]}) + "\n")
    args = ["bench", "retrieval", "--tools", str(tools), "--queries", str(queries), "--out-of-scope", str(oos), "--cv"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "no relevant tools" in result.output


def test_cli_names_a_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "retrieval", "--tools", str(tmp_path / "nope"), "--queries", "q"])
    assert result.exit_code == 1
    assert "does not exist" in result.output
