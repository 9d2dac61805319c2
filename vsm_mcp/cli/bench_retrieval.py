"""``vsm-mcp bench retrieval``: tool-retrieval quality and latency of bm25, embedding and hybrid.

Tools of a JSONL file (format: the tool_retrieval benchmark README) are loaded into a fresh
``ToolRegistry`` through ``record_from_tool`` — the conversion live upstream tools go through —
and every query runs through ``ToolRegistry.search``, the function behind ``find_tools``.
The ranking is over all tools of the file; latency is measured on each query's first search
(``limit=10``, query embedding not yet cached), the cost a new question pays.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router.registry.index import MODES, Fusion, Mode, ToolRecord, ToolRegistry, record_from_tool
from router.registry.names import assign
from vsm_mcp.errors import InvalidArguments


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    relevant: tuple[str, ...]  # "<server>/<name>"


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


def run(
    tools_path: Path,
    queries_path: Path,
    registry_factory: Callable[[], ToolRegistry],
    *,
    fusion: Fusion | None = None,
) -> dict[str, Any]:
    """Load, index and evaluate all three modes; the JSON-ready result of the benchmark."""
    by_server = load_tools(tools_path)
    known = {f"{r.server}/{r.name}" for recs in by_server.values() for r in recs}
    queries = load_queries(queries_path, known)
    registry = registry_factory()
    for server, records in by_server.items():
        registry.replace_server(server, records)
    result: dict[str, Any] = {}
    for mode in MODES:
        # Each mode gets a cold query-embedding cache so its latency includes embedding the query.
        registry.clear_query_cache()
        result[mode] = evaluate(registry, queries, mode, fusion)  # type: ignore[arg-type]
    result["n_tools"] = len(registry)
    result["n_queries"] = len(queries)
    return result
