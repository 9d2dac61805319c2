"""Leave-servers-out cross-validation (router/registry/crossval.py) on synthetic candidates."""

from __future__ import annotations

import numpy as np

from router.registry.crossval import Candidates, LabelledQuery, cross_validate, make_folds, query_class
from router.registry.ranker import QueryEvidence


def test_servers_cited_by_one_query_share_a_fold() -> None:
    qs = [LabelledQuery("a", "x", ("s1/t", "s2/t")), LabelledQuery("b", "y", ("s3/t",)), LabelledQuery("c", "z", ())]
    folds = make_folds(qs, ["s1", "s2", "s3", "s4"], 2)
    assert any({"s1", "s2"} <= set(f) for f in folds) and sorted(s for f in folds for s in f) == ["s1", "s2", "s3", "s4"]


def test_query_classes_follow_their_rules() -> None:
    assert query_class(LabelledQuery("a", "read two files", ("fs/read", "fs2/read"))) == "multi"
    assert query_class(LabelledQuery("b", "list my Heroku apps", ("heroku/list_apps",))) == "product"
    assert query_class(LabelledQuery("c", "list my apps", ("heroku/list_apps",))) == "plain"
    assert query_class(LabelledQuery("d", "run it with go", ("fs-go/run",))) == "plain"  # "go" names no product


def _cands(rng: np.random.Generator, server: str, rel: int | None) -> Candidates:
    k = 8
    fused = rng.uniform(0, 0.5, k)
    bm = rng.uniform(0, 1, k)
    if rel is not None:
        fused[rel], bm[rel] = 0.9, 5.0
    order = list(np.argsort(-fused, kind="stable"))
    ev = QueryEvidence(
        cos=rng.uniform(0, 0.5, k)[order], bm25=bm[order], name_cover=np.zeros(k), action=np.zeros(k),
        server_named=np.zeros(k), fused=fused[order], max_cos=0.5, max_bm25=float(bm.max()),
        known_terms=1.0 if rel is not None else 0.0,
    )
    return Candidates([f"{server}/t{i}" for i in order], ev)


def test_every_query_is_scored_by_a_model_that_never_saw_its_servers() -> None:
    rng = np.random.default_rng(3)
    servers = [f"s{i}" for i in range(6)]
    queries, cands = [], []
    for i in range(60):
        server = servers[i % 6]
        if i % 5 == 4:
            queries.append(LabelledQuery(f"o{i}", "nothing", ()))
            cands.append(_cands(rng, server, None))
        else:
            rel = int(rng.integers(8))
            queries.append(LabelledQuery(f"q{i}", "something", (f"{server}/t{rel}",)))
            cands.append(_cands(rng, server, rel))
    result = cross_validate(cands, queries, servers, folds=3)
    assert len(result["folds"]) == 3 and sum(f["n"] for f in result["ranker"]["per_fold"]) == 48
    assert result["ranker"]["overall"]["recall@1"] >= 0.9  # the planted signal is learnt across folds
    assert result["no_match"]["out_of_scope"] == 12 and result["no_match"]["out_of_scope_no_match"] >= 0.8
    assert 0.0 <= result["calibration"]["ece"] <= 1.0
