"""Tool search on the default aggregate — the built-in servers a new user searches first.

The dev set (shared/bench/tool_retrieval) holds other projects' tools; this measures ours, as a
user of ``make run`` meets them: the router of manifests/default.yaml started in this process on
a fresh home (SQLite, the default embedder), every built-in server's tools indexed, then
``find_tools``' search (``ToolSearch.find``, the caller holding every scope) for each query of
benchmarks/data/tool_retrieval/builtin_queries.jsonl. The shipped ranker was fitted on the dev
set only, so every figure here is held out from it.

Queries carry a ``split``: ``guide`` queries may be read while improving tools' titles and
descriptions, ``check`` queries are the held-out half — their misses are not looked at one by
one, so a change that helps ``guide`` but not ``check`` is fitted to single queries.

    python benchmarks/builtin_search.py [--queries PATH] [--misses] [--json]

Prints recall@1 / recall@5 / MRR per split, the in-scope queries answered ``no_match`` and the
out-of-scope queries (``relevant`` empty) answered ``no_match``; ``--misses`` lists the guide
queries whose tool is not first. The last line with ``--json`` is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from router.local import running_router  # noqa: E402
from router.registry.crossval import rank_metrics  # noqa: E402
from vsm_mcp import migrate  # noqa: E402
from vsm_mcp.config import load_settings  # noqa: E402

DEFAULT_QUERIES = ROOT / "benchmarks" / "data" / "tool_retrieval" / "builtin_queries.jsonl"


def load(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row.get("query"), str) or row.get("split") not in ("guide", "check"):
                raise SystemExit(f"{path}:{n}: each line needs 'query' and 'split' (guide or check)")
            rows.append(row)
    return rows


async def answers(queries: list[dict[str, Any]], home: Path) -> list[dict[str, Any]]:
    """Each query's ranking (public names, best first) and no_match, from a live default aggregate."""
    settings = load_settings(home=str(home))
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    out = []
    async with running_router(settings) as (runtime, principal):
        await runtime.tool_search.find(principal, "warm up", limit=1)  # waits for every server's index
        known = {r.public_name for r in runtime.tool_search.registry.records()}
        for q in queries:
            unknown = [t for t in q.get("relevant", []) if t not in known]
            if unknown:
                raise SystemExit(f"query {q['id']}: unknown tool {unknown[0]!r} (not in the default aggregate)")
            found = await runtime.tool_search.find(principal, q["query"], limit=q.get("limit", 10))
            out.append({**q, "ranked": [h.record.public_name for h in found.hits], "no_match": found.no_match,
                        "scores": [round(h.score, 4) for h in found.hits]})
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for split in ("guide", "check", "all"):
        part = [r for r in rows if split == "all" or r["split"] == split]
        ins = [r for r in part if r["relevant"]]
        oos = [r for r in part if not r["relevant"]]
        m = [rank_metrics(r["ranked"], r["relevant"]) for r in ins]
        result[split] = {
            "n": len(ins),
            "recall@1": round(sum(x[0] for x in m) / len(m), 4),
            "recall@5": round(sum(x[1] for x in m) / len(m), 4),
            "mrr": round(sum(x[2] for x in m) / len(m), 4),
            "in_scope_no_match": round(sum(r["no_match"] for r in ins) / len(ins), 4),
            "out_of_scope": len(oos),
            "out_of_scope_no_match": round(sum(r["no_match"] for r in oos) / len(oos), 4) if oos else None,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=Path, default=DEFAULT_QUERIES)
    parser.add_argument("--misses", action="store_true", help="list the guide queries whose tool is not first")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    queries = load(args.queries)
    with tempfile.TemporaryDirectory(prefix="vsm-builtin-search-") as home:
        rows = asyncio.run(answers(queries, Path(home)))
    result = summary(rows)
    print(f"{'split':6} {'n':>4} {'recall@1':>9} {'recall@5':>9} {'MRR':>7} {'in-scope no_match':>18} {'out-of-scope no_match':>22}")
    for split, s in result.items():
        oos = f"{s['out_of_scope_no_match']:.3f} of {s['out_of_scope']}" if s["out_of_scope"] else "-"
        print(f"{split:6} {s['n']:4d} {s['recall@1']:9.4f} {s['recall@5']:9.4f} {s['mrr']:7.4f} {s['in_scope_no_match']:18.3f} {oos:>22}")
    if args.misses:
        for r in rows:
            if r["split"] != "guide":
                continue
            right = bool(r["relevant"]) and r["ranked"][0] in r["relevant"] and not r["no_match"]
            if right or (not r["relevant"] and r["no_match"]):
                continue
            flag = " no_match" if r["no_match"] else ""
            top = list(zip(r["ranked"][:3], r["scores"][:3], strict=True))
            print(f"  miss {r['id']} {r['query']!r} want {r['relevant']} got {top}{flag}")
    if args.json:
        print(json.dumps({"splits": result, "queries": len(rows)}))


if __name__ == "__main__":
    main()
