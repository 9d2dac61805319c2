"""The second stage (router/registry/ranker.py): probabilities, the fit, the threshold, the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.registry.ranker import (
    NULL_FEATURES,
    TOOL_FEATURES,
    Example,
    QueryEvidence,
    Ranker,
    choose_threshold,
    default_ranker,
    fit,
)
from vsm_mcp.errors import ConfigError


def evidence(rng: np.random.Generator, k: int, signal: int | None, strength: float = 1.0) -> QueryEvidence:
    """Candidates with noise; ``signal`` (if any) gets a clearly better fused score and bm25."""
    fused = rng.uniform(0.0, 0.6, k)
    bm = rng.uniform(0.0, 2.0, k)
    if signal is not None:
        fused[signal], bm[signal] = 1.0, 6.0 * strength
    cos = rng.uniform(0.1, 0.5, k)
    return QueryEvidence(
        cos=cos, bm25=bm, name_cover=np.zeros(k), action=np.zeros(k), server_named=np.zeros(k), fused=fused,
        max_cos=float(cos.max()), max_bm25=float(bm.max()), known_terms=1.0 if signal is not None else 0.2,
    )


def test_probabilities_of_the_tools_and_of_no_tool_sum_to_one() -> None:
    rng = np.random.default_rng(1)
    model = Ranker(rng.normal(size=len(TOOL_FEATURES)), rng.normal(size=len(NULL_FEATURES)), 0.3)
    p, p_none = model.probabilities(evidence(rng, 12, 3))
    assert p.shape == (12,) and np.all(p >= 0) and p.sum() + p_none == pytest.approx(1.0)
    order, probs, _ = model.order(evidence(rng, 5, None))
    assert sorted(order) == list(range(5)) and all(probs[a] >= probs[b] for a, b in zip(order, order[1:], strict=False))


def test_the_fit_learns_the_relevant_tool_and_when_there_is_none() -> None:
    rng = np.random.default_rng(7)
    examples = []
    for i in range(120):
        rel = i % 16
        if i % 4 == 3:  # out of scope: no strong candidate, few known words
            examples.append(Example(evidence(rng, 16, None), np.zeros(16, dtype=bool), False))
        else:
            mask = np.zeros(16, dtype=bool)
            mask[rel] = True
            examples.append(Example(evidence(rng, 16, rel), mask, True))
    tool_w, null_w = fit(examples)
    model = Ranker(tool_w, null_w, 0.0)
    p_in, none_in = model.probabilities(evidence(rng, 16, 5))
    assert int(np.argmax(p_in)) == 5 and p_in[5] > 0.5 and none_in < 0.3
    p_out, none_out = model.probabilities(evidence(rng, 16, None))
    assert none_out > 0.5 and model.no_match(float(p_out.max()), none_out)


def test_a_fit_needs_a_usable_query() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="no training query"):
        fit([Example(evidence(rng, 4, 1), np.zeros(4, dtype=bool), True)])


@given(st.lists(st.floats(0, 1), max_size=30), st.lists(st.floats(0, 1), max_size=30))
def test_the_threshold_is_the_best_trade_off_among_all_cuts(best_in: list[float], best_out: list[float]) -> None:
    t = choose_threshold(best_in, best_out)

    def score(cut: float) -> float:
        a = float(np.mean(np.asarray(best_out) < cut)) if best_out else 0.0
        b = float(np.mean(np.asarray(best_in) < cut)) if best_in else 0.0
        return a - 2.0 * b

    for cut in [-1.0, 0.0, 1.5, *(x + 1e-9 for x in best_in + best_out)]:
        assert score(t) >= score(cut) - 1e-12


def test_weights_round_trip_and_a_file_for_other_features_is_refused(tmp_path: Path) -> None:
    model = Ranker(np.arange(len(TOOL_FEATURES), dtype=float), np.ones(len(NULL_FEATURES)), 0.25, {"queries": 3})
    path = tmp_path / "r.json"
    path.write_text(json.dumps(model.to_json()))
    again = Ranker.load(path)
    assert np.allclose(again.tool_weights, model.tool_weights) and again.threshold == 0.25 and again.meta == {"queries": 3}
    data = model.to_json()
    data["tool_features"] = ["cos"]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="other features"):
        Ranker.load(path)
    with pytest.raises(ConfigError, match="nope.json"):
        Ranker.load(tmp_path / "nope.json")


def test_the_shipped_ranker_loads() -> None:
    model = default_ranker()
    assert len(model.tool_weights) == len(TOOL_FEATURES) and -10.0 < model.threshold < 10.0
    assert model.meta["queries"] > 0 and model.meta["out_of_scope"] > 0
