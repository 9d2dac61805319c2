"""Leave-servers-out cross-validation of the general tool-search choices (issue 5).

The figure that counts is hybrid recall@5 on an unseen set of other MCP servers, so a choice
(field weights, tokenisation, BM25 k1/b and length normalisation, query synonyms, fusion and
its weights, what a tool is embedded as) is only worth adopting if it helps on servers it was
not chosen on. This script splits the dev set by server into folds, chooses on the other folds
and reports the held-out fold:

* folds: servers that share a query (fs-go + desktop-commander, redis + aws-valkey) stay
  together; components are dealt greedily to the fold with the fewest queries;
* ``baseline``: the registry defaults, per held-out fold;
* ``one_factor``: each single change from the defaults, its held-out Δrecall@5 / ΔMRR per fold
  and in how many folds it helps or hurts — adopt only what helps consistently;
* ``selected``: per fold, greedy coordinate ascent over all dimensions on the training
  queries (objective recall@5 + MRR), then the held-out figures of what it chose — the honest
  estimate of "tune on this set, run on another";
* protocols: ``all`` ranks every query over all tools; ``strict`` additionally hides the
  held-out servers' tools from the catalog while choosing (BM25 statistics and min-max
  ranges then come from training servers only). Held-out figures always rank over all tools.

Scores come from ``ToolRegistry`` itself (its BM25 index, query terms, stored vectors and
``registry.fuse``) — the first stage behind ``find_tools``; the baseline is cross-checked against
``ToolRegistry.candidates`` on the full set. The second stage (the fitted ranker, issue 26) has
its own cross-validation: ``vsm-mcp bench retrieval --cv``. Tool vectors are cached in a diskcache store
(``--store``), so each embedding-text variant is embedded once.

    python benchmarks/retrieval_cv.py [--folds 5] [--protocol all|strict|both] [--config JSON] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from router.registry import index as reg_mod  # noqa: E402
from router.registry.crossval import make_folds  # noqa: E402
from router.registry.embedding_store import DiskEmbeddingStore  # noqa: E402
from router.registry.index import ToolRecord, ToolRegistry, fuse  # noqa: E402
from router.registry.tool_text import (  # noqa: E402
    STOPWORDS,
    embedding_text,
    field_tokens,
    first_sentences,
    iter_params,
    split_identifier,
    stem,
    tokenize,
)
from vsm_mcp.cli.bench_retrieval import Query, load_queries, load_tools  # noqa: E402
from vsm_mcp.embeddings import Embedder, make_embedder  # noqa: E402

DEV = Path("/work/shared/bench/tool_retrieval")
Vector = npt.NDArray[np.float32]

# --- the choices under test ---------------------------------------------------------------


def _tok_nostem(text: str) -> list[str]:
    return [w for w in split_identifier(text) if w not in STOPWORDS]


def _tok_nostop(text: str) -> list[str]:
    return [stem(w) for w in split_identifier(text)]


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"base": tokenize, "nostem": _tok_nostem, "nostop": _tok_nostop}


def _param_names(rec: ToolRecord) -> list[str]:
    return list(dict.fromkeys(" ".join(split_identifier(p.rsplit(".", 1)[-1])) for p, _ in iter_params(rec.input_schema)))


def _text_with(desc_chars: int, params: bool = True, server: bool = True) -> Callable[[ToolRecord], str]:
    def compose(rec: ToolRecord) -> str:
        schema = rec.input_schema if params else {}
        sid = rec.server if server else ""
        return embedding_text(rec.name, rec.title, rec.description, schema, server=sid, desc_chars=desc_chars)

    return compose


def _text_param_docs(rec: ToolRecord) -> str:
    head = embedding_text(rec.name, rec.title, rec.description, {}, server=rec.server, desc_chars=600)
    docs = [f"{' '.join(split_identifier(p.rsplit('.', 1)[-1]))} ({d})" if d else " ".join(split_identifier(p))
            for p, d in iter_params(rec.input_schema)]
    return f"{head}. Parameters: {', '.join(docs)}." if docs else head


# "base" is what the registry embeds (server id + name + description + parameter names).
EMBED_TEXTS: dict[str, Callable[[ToolRecord], str]] = {
    "base": lambda rec: rec.embedding_text,
    "noserver": _text_with(600, server=False),
    "desc300": _text_with(300),
    "desc1200": _text_with(1200),
    "noparams": _text_with(600, params=False),
    "paramdocs": _text_param_docs,
}

# BM25 field-weight sets are (name, title, description, params, server).
FIELD_ORDER = ("name", "title", "description", "params", "server")


@dataclass(frozen=True)
class Config:
    """One point in the space of general choices; defaults = the registry's defaults."""

    w_name: float = reg_mod.FIELD_WEIGHTS["name"]
    w_title: float = reg_mod.FIELD_WEIGHTS["title"]
    w_desc: float = reg_mod.FIELD_WEIGHTS["description"]
    w_params: float = reg_mod.FIELD_WEIGHTS["params"]
    w_server: float = reg_mod.FIELD_WEIGHTS["server"]
    k1: float = reg_mod.BM25_K1
    b: float = reg_mod.BM25_B
    per_field: bool = reg_mod.BM25_PER_FIELD
    tokenizer: str = "base"
    synonym_weight: float = reg_mod.LEXICON_WEIGHT
    embed_text: str = "base"
    bm25_desc_chars: int = 0  # 0 = the whole description
    fusion: str = "weighted"
    embed_weight: float = reg_mod.EMBED_WEIGHT
    rrf_k: float = reg_mod.RRF_K

    def field_weights(self) -> dict[str, float]:
        return dict(zip(FIELD_ORDER, (self.w_name, self.w_title, self.w_desc, self.w_params, self.w_server), strict=True))

    def bm_key(self) -> tuple[Any, ...]:
        return (self.w_name, self.w_title, self.w_desc, self.w_params, self.w_server, self.k1, self.b,
                self.per_field, self.tokenizer, self.synonym_weight, self.bm25_desc_chars)


# Values tried per dimension (the default is always among them).
DIMENSIONS: dict[str, tuple[Any, ...]] = {
    "w_name": (1.0, 2.0, 3.0, 5.0),
    "w_desc": (0.5, 1.0, 2.0),
    "w_params": (0.0, 0.25, 0.5, 1.0),
    "w_server": (0.0, 0.5, 1.0, 2.0),
    "k1": (0.6, 0.9, 1.2, 1.6, 2.0),
    "b": (0.3, 0.5, 0.75, 0.9),
    "per_field": (False, True),
    "tokenizer": tuple(TOKENIZERS),
    "synonym_weight": (0.0, 0.15, 0.3, 0.5),
    "embed_text": tuple(EMBED_TEXTS),
    "bm25_desc_chars": (0, 300, 600, 1200),
    "fusion": ("weighted", "rrf", "zscore"),
    "embed_weight": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "rrf_k": (10.0, 30.0, 60.0),
}


def _standardise(x: Vector) -> Vector:
    # Distribution-based fusion (mean ± 3σ) ranks exactly like this, so one variant covers both.
    return ((x - float(x.mean())) / max(float(x.std()), 1e-9)).astype(np.float32)


def cv_fuse(bm: Vector, emb: Vector, mask: npt.NDArray[np.bool_], cfg: Config) -> Vector:
    """``registry.fuse`` for the fusions it has; experimental normalisations otherwise."""
    if cfg.fusion in ("weighted", "rrf"):
        return fuse(bm, emb, mask, cfg.fusion, embed_weight=cfg.embed_weight, rrf_k=cfg.rrf_k)  # type: ignore[arg-type]
    w = np.float32(cfg.embed_weight)
    return (w * _standardise(emb) + (np.float32(1.0) - w) * _standardise(bm)).astype(np.float32)


class CVRegistry(ToolRegistry):
    """The production registry with one config's tokenizer and embedding text swapped in."""

    def __init__(self, embedder: Embedder, store: Any, cfg: Config) -> None:
        self.cfg = cfg
        super().__init__(
            embedder,
            store=store,
            fusion=cfg.fusion,  # type: ignore[arg-type]
            embed_weight=cfg.embed_weight,
            lexicon_weight=cfg.synonym_weight,
            field_weights=cfg.field_weights(),
            bm25_k1=cfg.k1,
            bm25_b=cfg.b,
            bm25_per_field=cfg.per_field,
            rrf_k=cfg.rrf_k,
        )

    def _query_terms(self, query: str) -> dict[str, float]:
        if self.cfg.tokenizer == "base":
            return super()._query_terms(query)
        own = dict.fromkeys(TOKENIZERS[self.cfg.tokenizer](query), 1.0)
        return self.lexicon.expand(query, own, self.lexicon_weight)[0]

    def _fields(self, rec: ToolRecord) -> dict[str, list[str]]:
        tok = TOKENIZERS[self.cfg.tokenizer]
        desc = first_sentences(rec.description, self.cfg.bm25_desc_chars) if self.cfg.bm25_desc_chars else rec.description
        return field_tokens(rec.name, rec.title, desc, rec.input_schema, rec.server, tokens=tok)

    def _embed_text(self, rec: ToolRecord) -> str:
        return EMBED_TEXTS[self.cfg.embed_text](rec)


# --- evaluation ---------------------------------------------------------------------------


def rank_metrics(scores: Vector, relevant: npt.NDArray[np.intp]) -> tuple[float, float, float, float]:
    """(recall@1, recall@5, reciprocal rank, nDCG@10) with ``_ranked``'s tie-break (lower index first)."""
    ranks = []
    for r in relevant:
        s = scores[r]
        if not np.isfinite(s):
            continue
        ranks.append(int(np.count_nonzero(scores > s)) + int(np.count_nonzero(scores[:r] == s)) + 1)
    n = len(relevant)
    dcg = sum(1.0 / math.log2(x + 1) for x in ranks if x <= 10)
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, min(n, 10) + 1))
    return (
        sum(x <= 1 for x in ranks) / n,
        sum(x <= 5 for x in ranks) / n,
        1.0 / min(ranks) if ranks else 0.0,
        dcg / idcg,
    )


class Bench:
    """Component score matrices (query × tool) per config, cached; metrics per query."""

    def __init__(self, by_server: dict[str, list[ToolRecord]], queries: list[Query], embedder: Embedder, store: Any) -> None:
        self.by_server, self.queries, self.embedder, self.store = by_server, queries, embedder, store
        self._bm: dict[tuple[Any, ...], Vector] = {}
        self._emb: dict[tuple[str, frozenset[str]], Vector] = {}
        self._reg: dict[tuple[Any, ...], CVRegistry] = {}
        self._order: dict[frozenset[str], list[ToolRecord]] = {}
        self._qvec = np.vstack([embedder.embed([q.text])[0] for q in queries])
        self._per_query: dict[tuple[Config, frozenset[str]], npt.NDArray[np.float64]] = {}

    def registry(self, cfg: Config, catalog: frozenset[str]) -> CVRegistry:
        key = (cfg.bm_key(), cfg.embed_text, catalog)
        reg = self._reg.get(key)
        if reg is None:
            reg = self._reg[key] = CVRegistry(self.embedder, self.store, cfg)
            reg.replace_servers({s: self.by_server[s] for s in sorted(catalog)})
            self._order[catalog] = list(reg.records())
        return reg

    def components(self, cfg: Config, catalog: frozenset[str]) -> tuple[Vector, Vector]:
        bkey = (cfg.bm_key(), catalog)
        if bkey not in self._bm:
            reg = self.registry(replace(cfg, embed_text="base"), catalog)
            self._bm[bkey] = np.vstack([reg._snapshot.bm25.scores(reg._query_terms(q.text)) for q in self.queries])
        ekey = (cfg.embed_text, catalog)
        if ekey not in self._emb:
            reg = self.registry(replace(Config(), embed_text=cfg.embed_text), catalog)
            self._emb[ekey] = (self._qvec @ reg._snapshot.vectors.T).astype(np.float32)
        return self._bm[bkey], self._emb[ekey]

    def per_query(self, cfg: Config, catalog: frozenset[str], mode: str = "hybrid") -> npt.NDArray[np.float64]:
        """Metrics of every query (rows; NaN where a relevant tool is outside ``catalog``)."""
        cache_key = (replace(cfg, fusion=f"{cfg.fusion}:{mode}"), catalog)
        hit = self._per_query.get(cache_key)
        if hit is not None:
            return hit
        bm, emb = self.components(cfg, catalog)
        order = self._order[catalog]
        index = {f"{r.server}/{r.name}": i for i, r in enumerate(order)}
        mask = np.ones(len(order), dtype=np.bool_)
        out = np.full((len(self.queries), 4), np.nan)
        for qi, q in enumerate(self.queries):
            if any(r not in index for r in q.relevant):
                continue
            if mode == "bm25":
                scores = np.where(bm[qi] > 0, bm[qi], np.float32(-np.inf)).astype(np.float32)
            elif mode == "embedding":
                scores = emb[qi]
            else:
                scores = cv_fuse(bm[qi], emb[qi], mask, cfg)
            out[qi] = rank_metrics(scores, np.asarray([index[r] for r in q.relevant], dtype=np.intp))
        self._per_query[cache_key] = out
        return out


def summary(rows: npt.NDArray[np.float64]) -> dict[str, float]:
    m = np.nanmean(rows, axis=0) if len(rows) else np.zeros(4)
    return {k: round(float(v), 4) for k, v in zip(("recall@1", "recall@5", "mrr", "ndcg@10"), m, strict=True)}


def objective(rows: npt.NDArray[np.float64]) -> float:
    return float(np.nanmean(rows[:, 1]) + np.nanmean(rows[:, 2]))


def coordinate_ascent(bench: Bench, train: npt.NDArray[np.bool_], catalog: frozenset[str], start: Config, passes: int = 2) -> Config:
    best, best_score = start, objective(bench.per_query(start, catalog)[train])
    for _ in range(passes):
        improved = False
        for dim, values in DIMENSIONS.items():
            for v in values:
                cand = replace(best, **{dim: v})
                score = objective(bench.per_query(cand, catalog)[train])
                # A change must beat the incumbent by a margin, so ties keep the simpler default.
                if score > best_score + 1e-3:
                    best, best_score, improved = cand, score, True
        if not improved:
            break
    return best


def diff(cfg: Config, base: Config) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in fields(Config) if getattr(cfg, f.name) != getattr(base, f.name)}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tools", type=Path, default=DEV / "tools.jsonl")
    ap.add_argument("--queries", type=Path, default=DEV / "queries.jsonl")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--protocol", choices=("all", "strict", "both"), default="both")
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--store", type=Path, default=Path.home() / ".cache" / "vsm-mcp" / "retrieval-cv")
    ap.add_argument("--config", default="", help="JSON object of Config fields: a candidate to compare with the baseline")
    ap.add_argument("--no-one-factor", action="store_true")
    ap.add_argument("--no-select", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    by_server = load_tools(args.tools)
    known = {f"{r.server}/{r.name}" for recs in by_server.values() for r in recs}
    queries = load_queries(args.queries, known)
    embedder = make_embedder(args.embedder)
    store = DiskEmbeddingStore(args.store, embedder.dim)
    bench = Bench(by_server, queries, embedder, store)
    servers = sorted(by_server)
    everything = frozenset(servers)
    folds = make_folds(queries, servers, args.folds)
    q_fold = np.array([next(i for i, f in enumerate(folds) if q.relevant[0].split("/", 1)[0] in f) for q in queries])
    base = Config()
    candidate = replace(base, **json.loads(args.config)) if args.config else None
    say: Callable[..., None] = (lambda *a: print(*a, file=sys.stderr)) if args.json else print

    # The matrix path must reproduce the registry's own search exactly.
    check = summary(bench.per_query(base, everything))
    reg = bench.registry(base, everything)
    ranked_ok = 0
    for q in queries[:40]:
        top, _ = reg.candidates(q.text, limit=len(reg))  # the first stage: what this script tunes
        ranked = [f"{h.record.server}/{h.record.name}" for h in top]
        ranked_ok += int(ranked.index(q.relevant[0]) + 1 == _rank(bench, base, everything, q))
    say(f"folds: {[f'{i}: ' + ','.join(f) + f' ({int((q_fold == i).sum())} q)' for i, f in enumerate(folds)]}")
    say(f"baseline overall (all tools): {check}; rank check vs ToolRegistry's first stage {ranked_ok}/40")

    def per_fold(cfg: Config) -> list[dict[str, float]]:
        rows = bench.per_query(cfg, everything)
        return [summary(rows[q_fold == i]) for i in range(len(folds))]

    def mean_of(per: list[dict[str, float]]) -> dict[str, float]:
        return {k: round(sum(p[k] for p in per) / len(per), 4) for k in per[0]}

    result: dict[str, Any] = {"folds": folds, "fold_queries": [int((q_fold == i).sum()) for i in range(len(folds))]}
    result["baseline"] = {"overall": check, "per_fold": per_fold(base), "modes_overall": {
        m: summary(bench.per_query(base, everything, m)) for m in ("bm25", "embedding")}}
    result["baseline"]["mean"] = mean_of(result["baseline"]["per_fold"])
    _print_folds(say, "baseline", result["baseline"]["per_fold"])

    if candidate is not None:
        cand_folds = per_fold(candidate)
        result["candidate"] = {
            "config": diff(candidate, base),
            "overall": summary(bench.per_query(candidate, everything)),
            "modes_overall": {m: summary(bench.per_query(candidate, everything, m)) for m in ("bm25", "embedding")},
            "per_fold": cand_folds,
            "mean": mean_of(cand_folds),
        }
        say(f"candidate {diff(candidate, base)} overall: {result['candidate']['overall']}")
        _print_folds(say, "candidate", cand_folds, result["baseline"]["per_fold"])

    if not args.no_one_factor:
        ref = candidate or base
        ref_folds = per_fold(ref)
        table = []
        for dim, values in DIMENSIONS.items():
            for v in values:
                if v == getattr(ref, dim):
                    continue
                per = per_fold(replace(ref, **{dim: v}))
                d5 = [round(p["recall@5"] - r["recall@5"], 4) for p, r in zip(per, ref_folds, strict=True)]
                dm = [round(p["mrr"] - r["mrr"], 4) for p, r in zip(per, ref_folds, strict=True)]
                both = [a + b for a, b in zip(d5, dm, strict=True)]
                table.append({"change": f"{dim}={v}", "d_recall@5": d5, "d_mrr": dm,
                              "folds_up": sum(x > 1e-9 for x in both), "folds_down": sum(x < -1e-9 for x in both),
                              "mean_d_recall@5": round(sum(d5) / len(d5), 4), "mean_d_mrr": round(sum(dm) / len(dm), 4)})
        table.sort(key=lambda r: -(r["mean_d_recall@5"] + r["mean_d_mrr"]))
        result["one_factor"] = {"reference": "candidate" if candidate else "baseline", "rows": table}
        say(f"\none-factor changes from the {result['one_factor']['reference']} (held-out Δ per fold; up/down = folds where Δ(recall@5+MRR) >0/<0):")
        for r in table:
            say(f"  {r['change']:<24} Δr@5 {r['d_recall@5']} mean {r['mean_d_recall@5']:+.4f} | ΔMRR {r['d_mrr']} mean {r['mean_d_mrr']:+.4f} | up {r['folds_up']} down {r['folds_down']}")

    if not args.no_select:
        protocols = ("all", "strict") if args.protocol == "both" else (args.protocol,)
        result["selected"] = {}
        for proto in protocols:
            out = []
            for i, held in enumerate(folds):
                train_cat = everything if proto == "all" else frozenset(s for s in servers if s not in held)
                train = q_fold != i
                chosen = coordinate_ascent(bench, train, train_cat, base)
                held_rows = bench.per_query(chosen, everything)[q_fold == i]
                out.append({"fold": i, "chosen": diff(chosen, base), "held_out": summary(held_rows)})
            result["selected"][proto] = {"per_fold": out, "mean": mean_of([o["held_out"] for o in out])}
            say(f"\nselected per fold on training folds (protocol {proto}); held-out figures:")
            for o in out:
                say(f"  fold {o['fold']}: r@5 {o['held_out']['recall@5']:.4f} MRR {o['held_out']['mrr']:.4f}  chose {o['chosen']}")
            say(f"  mean: {result['selected'][proto]['mean']}")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(result))
    return result


def _rank(bench: Bench, cfg: Config, catalog: frozenset[str], q: Query) -> int:
    bm, emb = bench.components(cfg, catalog)
    qi = bench.queries.index(q)
    order = bench._order[catalog]
    idx = next(i for i, r in enumerate(order) if f"{r.server}/{r.name}" == q.relevant[0])
    scores = cv_fuse(bm[qi], emb[qi], np.ones(len(order), dtype=np.bool_), cfg)
    return int(np.count_nonzero(scores > scores[idx])) + int(np.count_nonzero(scores[:idx] == scores[idx])) + 1


def _print_folds(say: Callable[..., None], label: str, per: list[dict[str, float]], ref: list[dict[str, float]] | None = None) -> None:
    for i, p in enumerate(per):
        delta = f"  (Δr@5 {p['recall@5'] - ref[i]['recall@5']:+.4f}, ΔMRR {p['mrr'] - ref[i]['mrr']:+.4f})" if ref else ""
        say(f"  {label} fold {i}: r@1 {p['recall@1']:.4f} r@5 {p['recall@5']:.4f} MRR {p['mrr']:.4f} nDCG@10 {p['ndcg@10']:.4f}{delta}")


if __name__ == "__main__":
    main()
