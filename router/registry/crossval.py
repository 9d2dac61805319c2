"""Leave-servers-out cross-validation of tool search, and the fit of the shipped ranker.

The figure that counts is how search does on servers it was not tuned on, so the dev set is
split by server into folds (servers cited by one query stay together; out-of-scope queries are
dealt round-robin), the ranker (router/registry/ranker.py) is fitted — weights and no-match
threshold — on the other folds, and every query is scored by the model that never saw its
servers. ``vsm-mcp bench retrieval --cv`` prints these figures, overall, per fold and per
query class, next to the first stage alone (today's fusion) on the same folds.

Query classes (rules, not labels): ``multi`` — more than one relevant tool; ``product`` — the
query names the product of the tool's server (a word of the server id); ``plain`` — the rest.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from router.registry.ranker import L2, Example, QueryEvidence, Ranker, choose_threshold, fit
from router.registry.tool_text import split_identifier

CLASSES = ("plain", "product", "multi")
# No match when "no tool" is likelier than the best tool. Held out (benchmarks/RESULTS.md, issue
# 26) this parameter-free rule caught 0.80 of the out-of-scope queries and turned away 0.069 of
# the in-scope ones; a margin fitted on the training folds caught 0.84 but turned away 0.094,
# and sat on a knife edge for the built-in servers' queries.
NO_MATCH_MARGIN = 0.0
# Words of server ids that are not a product a user would name.
_GENERIC_ID_WORDS = frozenset({"mcp", "server", "go", "r", "py", "ts", "js"})


@dataclass(frozen=True)
class LabelledQuery:
    id: str
    text: str
    relevant: tuple[str, ...]  # "<server>/<name>"; empty: out of scope


@dataclass(frozen=True)
class Candidates:
    """One query's first-stage ranking (tool ids, best first) and the evidence of its pool."""

    ranked: list[str]
    evidence: QueryEvidence


def make_folds(queries: Sequence[LabelledQuery], servers: Sequence[str], k: int) -> list[list[str]]:
    """Servers dealt into ``k`` folds by query count; servers cited by one query stay in one fold."""
    parent = {s: s for s in servers}

    def root(s: str) -> str:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for q in queries:
        cited = [r.split("/", 1)[0] for r in q.relevant]
        for a, b in itertools.pairwise(cited):
            parent[root(a)] = root(b)
    comps: dict[str, list[str]] = {}
    for s in servers:
        comps.setdefault(root(s), []).append(s)
    n_q = {c: sum(1 for q in queries if q.relevant and root(q.relevant[0].split("/", 1)[0]) == c) for c in comps}
    folds: list[list[str]] = [[] for _ in range(k)]
    load = [0] * k
    for c in sorted(comps, key=lambda c: (-n_q[c], c)):
        i = min(range(k), key=lambda j: (load[j], len(folds[j]), j))
        folds[i].extend(comps[c])
        load[i] += n_q[c]
    return [sorted(f) for f in folds]


def query_class(q: LabelledQuery) -> str:
    if len(q.relevant) > 1:
        return "multi"
    words = set(split_identifier(q.text))
    server_words = {w for r in q.relevant for w in split_identifier(r.split("/", 1)[0])} - _GENERIC_ID_WORDS
    return "product" if words & server_words else "plain"


def rank_metrics(ranked: Sequence[str], relevant: Sequence[str]) -> tuple[float, float, float]:
    """(recall@1, recall@5, reciprocal rank) as in the dev set's README."""
    rel = set(relevant)
    first = next((i for i, t in enumerate(ranked, 1) if t in rel), 0)
    return len(rel & set(ranked[:1])) / len(rel), len(rel & set(ranked[:5])) / len(rel), 1.0 / first if first else 0.0


def _summary(rows: npt.NDArray[np.float64]) -> dict[str, float]:
    if not len(rows):
        return {"n": 0}
    m = rows.mean(0)
    return {"n": len(rows), "recall@1": round(float(m[0]), 4), "recall@5": round(float(m[1]), 4), "mrr": round(float(m[2]), 4)}


def _example(c: Candidates, q: LabelledQuery) -> Example:
    rel = set(q.relevant)
    pool = c.ranked[: len(c.evidence.cos)]
    return Example(c.evidence, np.array([t in rel for t in pool], dtype=bool), bool(q.relevant))


def fit_ranker(
    cands: Sequence[Candidates],
    queries: Sequence[LabelledQuery],
    *,
    l2: float = L2,
    meta: dict[str, Any] | None = None,
    fitted_threshold: bool = False,
) -> Ranker:
    """Weights fitted on these queries (in-scope and out-of-scope), and the no-match rule: "no
    tool" likelier than the best tool (margin 0, the default), or with ``fitted_threshold`` the
    margin that best separates these queries (``choose_threshold``)."""
    tool_w, null_w = fit([_example(c, q) for c, q in zip(cands, queries, strict=True)], l2=l2)
    model = Ranker(tool_w, null_w, 0.0)
    margins = []
    for c in cands:
        p, p_none = model.probabilities(c.evidence)
        margins.append(Ranker.margin(float(p.max()), p_none))
    best_in = [m for m, q in zip(margins, queries, strict=True) if q.relevant]
    best_out = [m for m, q in zip(margins, queries, strict=True) if not q.relevant]
    threshold = choose_threshold(best_in, best_out) if fitted_threshold else NO_MATCH_MARGIN
    return Ranker(tool_w, null_w, threshold, meta or {})


def reranked(model: Ranker, c: Candidates) -> tuple[list[str], float, float]:
    """The ranking the live search returns with ``model`` (the pool reordered, then the rest),
    the best tool's probability and that of no tool."""
    order, p, p_none = model.order(c.evidence)
    return [c.ranked[i] for i in order] + c.ranked[len(p) :], float(p.max(initial=0.0)), p_none


def cross_validate(
    cands: Sequence[Candidates],
    queries: Sequence[LabelledQuery],
    servers: Sequence[str],
    *,
    folds: int = 5,
    l2: float = L2,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Held-out figures of the first stage and of the fitted ranker, per fold and per class."""
    in_scope = [q for q in queries if q.relevant]
    split = make_folds(in_scope, servers, folds)
    fold_of: list[int] = []
    oos_seen = 0
    for q in queries:
        if q.relevant:
            fold_of.append(next(i for i, f in enumerate(split) if q.relevant[0].split("/", 1)[0] in f))
        else:
            fold_of.append(oos_seen % folds)
            oos_seen += 1
    fold_arr = np.array(fold_of)
    n = len(queries)
    first = np.full((n, 3), np.nan)
    second = np.full((n, 3), np.nan)
    best = np.zeros(n)
    no_match = np.zeros(n, dtype=bool)
    no_match_fitted = np.zeros(n, dtype=bool)
    for f in range(folds):
        train = [i for i in range(n) if fold_arr[i] != f]
        model = fit_ranker([cands[i] for i in train], [queries[i] for i in train], l2=l2)
        fitted = fit_ranker([cands[i] for i in train], [queries[i] for i in train], l2=l2, fitted_threshold=True)
        for i in (int(j) for j in np.flatnonzero(fold_arr == f)):
            ranking, top, none = reranked(model, cands[i])
            best[i], no_match[i] = top, model.no_match(top, none)
            no_match_fitted[i] = fitted.no_match(top, none)
            if queries[i].relevant:
                first[i] = rank_metrics(cands[i].ranked, queries[i].relevant)
                second[i] = rank_metrics(ranking, queries[i].relevant)
        if progress is not None:
            progress(f + 1)
    ins = np.array([bool(q.relevant) for q in queries])
    classes = np.array([query_class(q) if q.relevant else "out_of_scope" for q in queries])

    def block(rows: npt.NDArray[np.float64]) -> dict[str, Any]:
        return {
            "overall": _summary(rows[ins]),
            "per_class": {c: _summary(rows[classes == c]) for c in CLASSES},
            "per_fold": [_summary(rows[ins & (fold_arr == f)]) for f in range(folds)],
        }

    top_ok = np.array([bool(q.relevant) and second[i, 0] > 0 for i, q in enumerate(queries)])
    return {
        "folds": split,
        "first_stage": block(first),
        "ranker": block(second),
        "no_match": {
            "out_of_scope": int((~ins).sum()),
            "out_of_scope_no_match": round(float(no_match[~ins].mean()), 4) if (~ins).any() else None,
            "in_scope_no_match": round(float(no_match[ins].mean()), 4),
            "in_scope_top5_kept": round(float(np.nanmean(second[ins, 1])), 4),
            "fitted_margin": {  # the alternative rule, for comparison
                "out_of_scope_no_match": round(float(no_match_fitted[~ins].mean()), 4) if (~ins).any() else None,
                "in_scope_no_match": round(float(no_match_fitted[ins].mean()), 4),
            },
        },
        "calibration": calibration(best[ins], top_ok[ins]),
    }


def calibration(prob: npt.NDArray[np.float64], correct: npt.NDArray[np.bool_], bins: int = 10) -> dict[str, Any]:
    """Expected calibration error of the best tool's probability and the reliability table."""
    idx = np.clip((prob * bins).astype(int), 0, bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            conf, acc = float(prob[sel].mean()), float(correct[sel].mean())
            ece += abs(conf - acc) * int(sel.sum()) / len(prob)
            table.append({"bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}", "n": int(sel.sum()), "mean_p": round(conf, 3), "top1_right": round(acc, 3)})
    mean_p = float(prob.mean()) if len(prob) else math.nan
    return {"ece": round(ece, 4), "mean_p": round(mean_p, 4), "top1_right": round(float(correct.mean()), 4), "bins": table}
