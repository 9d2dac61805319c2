"""``vsm-mcp bench retrieval``: tool-retrieval quality and latency of bm25, embedding and hybrid.

Tools of a JSONL file (format: the tool_retrieval benchmark README) are loaded into a fresh
``ToolRegistry`` through ``record_from_tool`` — the conversion live upstream tools go through —
and every query runs through ``ToolRegistry.search``, the function behind ``find_tools``.
The ranking is over all tools of the file; latency is measured on each query's first search
(``limit=10``, query embedding not yet cached), the cost a new question pays.

``cross_validated`` gives the figures that count for the fitted second stage (the ranker,
router/registry/ranker.py): leave-servers-out, each query scored by a model fitted without its
servers (router/registry/crossval.py); ``fit_ranker_file`` writes the shipped weights.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from router.registry.crossval import Candidates, LabelledQuery, cross_validate, fit_ranker
from router.registry.index import MODES, Fusion, Mode, ToolRecord, ToolRegistry, record_from_tool
from router.registry.names import assign
from router.registry.ranker import L2, Ranker
from vsm_mcp.errors import InvalidArguments

# A labelled query of the dev set: the cross-validation's own type, so both read the same rows.
Query = LabelledQuery


def _read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InvalidArguments(f"{what} file {path} does not exist")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidArguments(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise InvalidArguments(f"{path}:{lineno}: expected a JSON object")
        rows.append(row)
    return rows


def load_tools(path: Path) -> dict[str, list[ToolRecord]]:
    """server → records, named ``<server>__<tool>`` exactly as the router names live tools."""
    rows = _read_jsonl(path, "tools")
    for lineno, row in enumerate(rows, 1):
        if not isinstance(row.get("server"), str) or not isinstance(row.get("name"), str):
            raise InvalidArguments(f"{path}: tool #{lineno} needs string fields 'server' and 'name'")
    names = assign((r["server"], r["name"]) for r in rows)
    by_server: dict[str, list[ToolRecord]] = {}
    for row in rows:
        rec = record_from_tool(row["server"], row, names[(row["server"], row["name"])])
        by_server.setdefault(rec.server, []).append(rec)
    return by_server


def load_queries(path: Path, known: set[str]) -> list[Query]:
    out: list[Query] = []
    for row in _read_jsonl(path, "queries"):
        rel = row.get("relevant")
        if not isinstance(row.get("query"), str) or not isinstance(rel, list) or not rel:
            raise InvalidArguments(f"{path}: query {row.get('id')!r} needs 'query' and a non-empty 'relevant' list")
        unknown = [r for r in rel if r not in known]
        if unknown:
            raise InvalidArguments(f"{path}: query {row.get('id')!r} cites unknown tool {unknown[0]!r}")
        out.append(Query(str(row.get("id", len(out))), row["query"], tuple(rel)))
    return out


def load_out_of_scope(path: Path) -> list[Query]:
    """Queries no tool of the set answers (``relevant`` empty or absent)."""
    out: list[Query] = []
    for row in _read_jsonl(path, "out-of-scope queries"):
        if not isinstance(row.get("query"), str) or row.get("relevant", []) != []:
            raise InvalidArguments(f"{path}: query {row.get('id')!r} needs 'query' and no relevant tools")
        out.append(Query(str(row.get("id", len(out))), row["query"], ()))
    return out


def metrics(ranked: Sequence[str], relevant: Sequence[str]) -> dict[str, float]:
    """recall@1, recall@5, reciprocal rank and nDCG@10 of one ranking (binary relevance)."""
    rel = set(relevant)
    first = next((i for i, t in enumerate(ranked, 1) if t in rel), 0)
    dcg = sum(1.0 / math.log2(i + 1) for i, t in enumerate(ranked[:10], 1) if t in rel)
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(rel), 10) + 1))
    return {
        "recall@1": len(rel & set(ranked[:1])) / len(rel),
        "recall@5": len(rel & set(ranked[:5])) / len(rel),
        "mrr": 1.0 / first if first else 0.0,
        "ndcg@10": dcg / idcg,
    }


def evaluate(registry: ToolRegistry, queries: Sequence[Query], mode: Mode, fusion: Fusion | None = None) -> dict[str, float]:
    """Mean metrics and latency percentiles of one search mode over ``queries``."""
    n = len(registry)
    totals = {"recall@1": 0.0, "recall@5": 0.0, "mrr": 0.0, "ndcg@10": 0.0}
    latencies = []
    for q in queries:
        start = time.perf_counter()
        registry.search(q.text, limit=10, mode=mode, fusion=fusion)
        latencies.append((time.perf_counter() - start) * 1000.0)
        hits = registry.search(q.text, limit=n, mode=mode, fusion=fusion)
        ranked = [f"{h.record.server}/{h.record.name}" for h in hits]
        for key, value in metrics(ranked, q.relevant).items():
            totals[key] += value
    out = {k: round(v / max(len(queries), 1), 4) for k, v in totals.items()}
    out["p50_ms"] = round(float(np.percentile(latencies, 50)), 3) if latencies else 0.0
    out["p95_ms"] = round(float(np.percentile(latencies, 95)), 3) if latencies else 0.0
    return out


def no_match_rate(registry: ToolRegistry, queries: Sequence[Query]) -> float:
    """Share of ``queries`` for which hybrid search says ``no_match``."""
    if not queries:
        return 0.0
    return round(sum(registry.query(q.text, limit=5).no_match for q in queries) / len(queries), 4)


def _indexed(tools_path: Path, queries_path: Path, registry_factory: Callable[[], ToolRegistry]) -> tuple[ToolRegistry, list[Query]]:
    by_server = load_tools(tools_path)
    known = {f"{r.server}/{r.name}" for recs in by_server.values() for r in recs}
    queries = load_queries(queries_path, known)
    registry = registry_factory()
    registry.replace_servers(by_server)
    return registry, queries


def run(
    tools_path: Path,
    queries_path: Path,
    registry_factory: Callable[[], ToolRegistry],
    *,
    fusion: Fusion | None = None,
    out_of_scope: Path | None = None,
) -> dict[str, Any]:
    """Load, index and evaluate all three modes; the JSON-ready result of the benchmark.

    ``hybrid`` is what find_tools returns (with the ranker when fusion is weighted);
    ``hybrid_fusion_only`` the first stage alone, as search ranked before the ranker.
    """
    registry, queries = _indexed(tools_path, queries_path, registry_factory)
    result: dict[str, Any] = {}
    for mode in MODES:
        # Each mode gets a cold query-embedding cache so its latency includes embedding the query.
        registry.clear_query_cache()
        result[mode] = evaluate(registry, queries, mode, fusion)  # type: ignore[arg-type]
    ranker = registry.ranker
    if ranker is not None and (fusion or registry.fusion) == "weighted":
        result["hybrid"]["in_scope_no_match"] = no_match_rate(registry, queries)
        if out_of_scope is not None:
            result["hybrid"]["out_of_scope_no_match"] = no_match_rate(registry, load_out_of_scope(out_of_scope))
        registry.ranker = None
        try:
            registry.clear_query_cache()
            result["hybrid_fusion_only"] = evaluate(registry, queries, "hybrid", fusion)
        finally:
            registry.ranker = ranker
    result["n_tools"] = len(registry)
    result["n_queries"] = len(queries)
    return result


def _candidates(registry: ToolRegistry, queries: Sequence[Query]) -> list[Candidates]:
    n = len(registry)
    out: list[Candidates] = []
    for q in queries:
        hits, evidence = registry.candidates(q.text, limit=n)
        if evidence is None:
            raise InvalidArguments("the tool set is empty")
        out.append(Candidates([f"{h.record.server}/{h.record.name}" for h in hits], evidence))
    return out


def cross_validated(
    tools_path: Path,
    queries_path: Path,
    out_of_scope: Path | None,
    registry_factory: Callable[[], ToolRegistry],
    *,
    folds: int = 5,
    l2: float = L2,
) -> dict[str, Any]:
    """Leave-servers-out figures of the first stage and of the ranker fitted without each fold."""
    if folds < 2:
        raise InvalidArguments("--folds must be at least 2")
    registry, queries = _indexed(tools_path, queries_path, registry_factory)
    oos = load_out_of_scope(out_of_scope) if out_of_scope is not None else []
    all_queries = [*queries, *oos]
    result = cross_validate(_candidates(registry, all_queries), all_queries, registry.servers(), folds=folds, l2=l2)
    result.update(n_tools=len(registry), n_queries=len(queries), n_out_of_scope=len(oos), l2=l2)
    return result


def fit_ranker_file(
    tools_path: Path,
    queries_path: Path,
    out_of_scope: Path | None,
    registry_factory: Callable[[], ToolRegistry],
    output: Path,
    *,
    l2: float = L2,
    meta: dict[str, Any] | None = None,
) -> Ranker:
    """Fit the ranker on every query of the set (and its out-of-scope queries) and write it."""
    registry, queries = _indexed(tools_path, queries_path, registry_factory)
    oos = load_out_of_scope(out_of_scope) if out_of_scope is not None else []
    all_queries = [*queries, *oos]
    info = {"tools": len(registry), "queries": len(queries), "out_of_scope": len(oos), "l2": l2,
            "embedder": registry.embedder.name, **(meta or {})}
    model = fit_ranker(_candidates(registry, all_queries), all_queries, l2=l2, meta=info)
    output.write_text(json.dumps(model.to_json(), indent=1) + "\n", encoding="utf-8")
    return model
