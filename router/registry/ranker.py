"""The second stage of tool search: calibrated probabilities and an honest "no match".

The first stage (router/registry/index.py) fuses cosine and BM25F scores and keeps the best
``POOL`` tools. This stage scores each of them with a linear model over a few general
features (how far its embedding is behind the best tool's; how much of the lexical evidence it
has; whether the query's action agrees with the tool name's; whether the query names its
server; whether the name says the query's words in the same number) and adds one more alternative, "no tool", whose score depends on how strong the
lexical evidence of the whole query is, how much of its vocabulary the catalog knows, whether it
names something the catalog never mentions ("post it on Slack") and how far the best tool's
embedding stands out from the other candidates'. A softmax over the pool and that alternative
gives each tool the probability that it is the tool asked for, and the no-tool alternative
absorbs the probability mass of a query that no tool answers.

Why a model instead of a fixed formula: min-max normalised scores always give the best tool
1.0, so there was never a "no match", and "0.6" meant nothing across queries. The weights and
the no-match threshold are fitted on the tool-retrieval dev set and its out-of-scope queries,
and their quality is only ever reported on servers that were held out of the fit
(``vsm-mcp bench retrieval --cv``); the shipped weights (``ranker.json``) are the fit on all
of it. Thirteen numbers (and a temperature) fitted on 253 queries: too few to overfit single
queries, enough to turn scores into probabilities.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vsm_mcp.errors import ConfigError

Vector = npt.NDArray[np.float64]
Matrix = npt.NDArray[np.float64]

# Per candidate tool; the order is the order of the weights in ranker.json. Only *relative*
# embedding evidence (the gap to the best tool, the min-max fused score): how high cosines run
# depends on how a catalog is written — on the built-in servers' terse descriptions the best
# cosine of in-scope queries is 0.07-0.14, on the dev set 0.4-0.7 — so a model that trusted
# absolute cosines declared "no match" for every built-in tool. Measured on held-out folds,
# dropping them (and the absolute BM25 score) cost nothing (benchmarks/RESULTS.md, issue 26).
# number: whether the tool name says the words it shares with the query in the same number
# ("list alerts" → get_alerts, not get_alert_details; "a trace and its spans" → get_trace_details).
TOOL_FEATURES = ("cos_gap", "bm25_share", "name_cover", "action", "server_named", "fused", "number")
# Per query, for the "no tool" alternative; the first is a constant (its bias).
# cos_spread: how far the best tool's cosine stands above the pool's median — relative again, so
# it travels between catalogs (on the built-in servers it cut in-scope queries turned away from
# 0.227 to 0.189 with the dev set's held-out figures unchanged; benchmarks/RESULTS.md).
# unknown_name: the query capitalises a word (a product, a place) that the catalog never uses;
# held out it lifted out-of-scope no_match 0.80 → 0.88 and cut in-scope turned away 0.079 →
# 0.054 (built-in check half 0.212 → 0.121), relative to the catalog like known_terms.
NULL_FEATURES = ("bias", "max_bm25_log", "max_name_cover", "known_terms", "cos_spread", "unknown_name")
L2 = 0.1  # penalty of the fit: 0.03-0.3 rank alike on held-out folds (benchmarks/RESULTS.md)
POOL = 32  # candidates scored by the model (all relevant dev tools are in the first stage's top 32 for 98%)
DEFAULT_PATH = Path(__file__).with_name("ranker.json")


@dataclass(frozen=True)
class QueryEvidence:
    """What the first stage knows about one query and its candidate tools (arrays of equal length)."""

    cos: Vector  # cosine of query and tool embedding
    bm25: Vector  # BM25F score with the query's (expanded) terms
    name_cover: Vector  # weighted share of the tool name's words found in the query
    action: Vector  # +1 the query's action is the tool name's, -1 it is another one, 0 unknown
    server_named: Vector  # 1 when the query names the tool's server
    fused: Vector  # the first stage's score (weighted min-max fusion)
    max_cos: float  # over every eligible tool, not just the candidates
    max_bm25: float
    known_terms: float  # share of the query's words that some tool's text uses (or a lexicon synonym of them)
    unknown_name: float = 0.0  # 1 when the query capitalises a word the catalog never uses ("on Slack")
    number: Vector | None = None  # +1 the shared name words agree in number (plural/singular), -1 not, 0 none shared

    def tool_matrix(self) -> Matrix:
        max_bm = self.max_bm25
        share = self.bm25 / max_bm if max_bm > 0 else np.zeros_like(self.bm25)
        return np.column_stack([
            self.cos - self.max_cos, share, self.name_cover, self.action, self.server_named, self.fused,
            self.number if self.number is not None else np.zeros_like(self.cos),
        ]).astype(np.float64)

    def null_vector(self) -> Vector:
        cover = float(self.name_cover.max()) if len(self.name_cover) else 0.0
        spread = self.max_cos - float(np.median(self.cos)) if len(self.cos) else 0.0
        return np.array([1.0, math.log1p(self.max_bm25), cover, self.known_terms, spread, self.unknown_name], dtype=np.float64)


@dataclass(frozen=True)
class Ranker:
    """Linear logits per tool and for "no tool"; ``threshold`` on the best tool's margin over
    "no tool" (``margin``)."""

    tool_weights: Vector
    null_weights: Vector
    threshold: float
    meta: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, ev: QueryEvidence) -> tuple[Vector, float]:
        """(probability of each candidate, probability that no tool answers the query)."""
        z = ev.tool_matrix() @ self.tool_weights
        z0 = float(ev.null_vector() @ self.null_weights)
        top = max(float(z.max(initial=-np.inf)), z0)
        ez = np.exp(z - top)
        e0 = math.exp(z0 - top)
        total = float(ez.sum()) + e0
        return ez / total, e0 / total

    @staticmethod
    def margin(best: float, none: float) -> float:
        """log(P(best tool) / P(no tool)): how much likelier the best tool is than no tool.

        The verdict is taken on this and not on P(best tool) itself, because the latter also
        falls as more near-equal tools share the mass: adding three servers to the default
        aggregate pushed a right first tool from 0.23 to 0.18 without making "no tool" likelier.
        """
        return math.log(max(best, 1e-300)) - math.log(max(none, 1e-300))

    def no_match(self, best: float, none: float) -> bool:
        return self.margin(best, none) < self.threshold

    def order(self, ev: QueryEvidence) -> tuple[list[int], Vector, float]:
        """Candidate positions best first (ties: first-stage order), their probabilities, P(no tool)."""
        p, p_none = self.probabilities(ev)
        return sorted(range(len(p)), key=lambda i: (-p[i], i)), p, p_none

    def to_json(self) -> dict[str, Any]:
        return {
            "tool_features": list(TOOL_FEATURES),
            "tool_weights": [round(float(x), 6) for x in self.tool_weights],
            "null_features": list(NULL_FEATURES),
            "null_weights": [round(float(x), 6) for x in self.null_weights],
            "threshold": round(self.threshold, 6),
            **({"meta": self.meta} if self.meta else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ranker:
        if list(data.get("tool_features", ())) != list(TOOL_FEATURES) or list(data.get("null_features", ())) != list(NULL_FEATURES):
            raise ValueError("ranker weights were fitted for other features; refit with vsm-mcp bench retrieval --fit")
        return cls(
            np.asarray(data["tool_weights"], dtype=np.float64),
            np.asarray(data["null_weights"], dtype=np.float64),
            float(data["threshold"]),
            dict(data.get("meta", {})),
        )

    @classmethod
    def load(cls, path: Path = DEFAULT_PATH) -> Ranker:
        """The ranker in ``path``; ConfigError names the file and what is wrong with it."""
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"ranker weights {path}: {exc}") from None


@cache
def default_ranker() -> Ranker:
    """The shipped ranker (``ranker.json``, fitted by ``vsm-mcp bench retrieval --fit``)."""
    return Ranker.load()


@dataclass(frozen=True)
class Example:
    """One training query: its evidence and which candidates are relevant (none: out of scope)."""

    evidence: QueryEvidence
    relevant: npt.NDArray[np.bool_]
    in_scope: bool


def fit(examples: Sequence[Example], *, l2: float = L2, steps: int = 400, lr: float = 0.05) -> tuple[Vector, Vector]:
    """Maximum-likelihood weights (L2-penalised) of the softmax over candidates and "no tool".

    An in-scope query whose relevant tools are all outside the pool carries no signal for the
    ranking and is skipped. Features are standardised for the optimiser (Adam, full batch) and
    the weights mapped back, so ``Ranker`` works on raw features.
    """
    used = [e for e in examples if not e.in_scope or e.relevant.any()]
    if not used:
        raise ValueError("no training query has a relevant tool among its candidates")
    pool = max(len(e.relevant) for e in used)
    n_f, n_g = len(TOOL_FEATURES), len(NULL_FEATURES)
    x = np.zeros((len(used), pool, n_f))
    valid = np.zeros((len(used), pool), dtype=bool)
    rel = np.zeros((len(used), pool))
    g = np.zeros((len(used), n_g))
    in_scope = np.array([e.in_scope for e in used])
    for i, e in enumerate(used):
        k = len(e.relevant)
        x[i, :k] = e.evidence.tool_matrix()
        valid[i, :k] = True
        rel[i, :k] = e.relevant
        g[i] = e.evidence.null_vector()
    mu, sd = x[valid].mean(0), x[valid].std(0) + 1e-9
    gmu, gsd = g.mean(0), g.std(0) + 1e-9
    gmu[0], gsd[0] = 0.0, 1.0
    xs, gs = np.where(valid[:, :, None], (x - mu) / sd, 0.0), (g - gmu) / gsd
    w, th = np.zeros(n_f), np.zeros(n_g)
    moments = [np.zeros(n_f), np.zeros(n_f), np.zeros(n_g), np.zeros(n_g)]
    n = len(used)
    for step in range(1, steps + 1):
        z = np.where(valid, xs @ w, -np.inf)
        z0 = gs @ th
        top = np.maximum(z.max(1), z0)
        ez, e0 = np.exp(z - top[:, None]), np.exp(z0 - top)
        total = ez.sum(1) + e0
        p, p0 = ez / total[:, None], e0 / total
        mass = (p * rel).sum(1)
        target = np.where(in_scope[:, None], p * rel / np.maximum(mass, 1e-300)[:, None], 0.0)
        grad_w = np.einsum("nk,nkf->f", p - target, xs) / n + 2 * l2 * w
        grad_t = gs.T @ (p0 - (~in_scope)) / n + 2 * l2 * np.r_[0.0, th[1:]]
        for j, (par, grad) in enumerate(((w, grad_w), (th, grad_t))):
            m1, m2 = moments[2 * j], moments[2 * j + 1]
            m1 *= 0.9
            m1 += 0.1 * grad
            m2 *= 0.999
            m2 += 0.001 * grad * grad
            par -= lr * (m1 / (1 - 0.9**step)) / (np.sqrt(m2 / (1 - 0.999**step)) + 1e-8)
    # The penalty shrinks every logit towards the others (under-confident probabilities); one
    # temperature, fitted after it, restores calibration without changing the ranking.
    best_t, best_ll = 1.0, -np.inf
    for temp in np.arange(0.5, 4.01, 0.1):
        ll = _log_likelihood(xs @ (w * temp), gs @ (th * temp), valid, rel, in_scope)
        if ll > best_ll:
            best_t, best_ll = float(temp), ll
    w, th = w * best_t, th * best_t
    tool_w = w / sd
    shift = float((mu / sd) @ w)  # logits of raw features are the standardised ones + shift
    null_w = th / gsd
    null_w[0] = th[0] - float((gmu / gsd) @ th) + shift
    return tool_w, null_w


def _log_likelihood(z: Matrix, z0: Vector, valid: npt.NDArray[np.bool_], rel: Matrix, in_scope: npt.NDArray[np.bool_]) -> float:
    z = np.where(valid, z, -np.inf)
    top = np.maximum(z.max(1), z0)
    ez, e0 = np.exp(z - top[:, None]), np.exp(z0 - top)
    total = ez.sum(1) + e0
    right = np.where(in_scope, (ez * rel).sum(1), e0)
    return float(np.log(np.maximum(right / total, 1e-300)).sum())


def choose_threshold(best_in: Sequence[float], best_out: Sequence[float], *, false_cost: float = 2.0) -> float:
    """The no-match threshold on the queries' margins (``Ranker.margin``): catch as many
    out-of-scope queries as possible while every in-scope query turned away costs
    ``false_cost`` of them."""
    pin, pout = np.asarray(best_in, dtype=np.float64), np.asarray(best_out, dtype=np.float64)
    values = np.unique(np.r_[pin, pout])
    floor = float(values[0]) - 1.0 if len(values) else 0.0
    best_score, best_t = -np.inf, floor
    # The floor turns nothing away; a cut just above an observed margin turns it away. Cuts
    # are tried from the lowest, so of equally good ones the one turning fewer away is kept.
    for cut in (floor, *(float(t) + 1e-9 for t in values)):
        score = float((pout < cut).mean() if len(pout) else 0.0) - false_cost * float((pin < cut).mean() if len(pin) else 0.0)
        if score > best_score:
            best_score, best_t = score, cut
    return best_t
