"""Differential testing: for generated policies and inputs, the compiled WebAssembly decides
exactly as the reference interpreter does (issue 10 acceptance: ≥ 2,000 cases)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vsm_mcp.policy import PolicyRuntime, compile_policy, normalize

RUNTIME = PolicyRuntime()
WORDS = ["", "a", "ab", "abc", "b", "ba", "x/y", "../", "é", "admin", "storage:write"]
STR_FACTS = ["input.a", "input.b2", "tool.name", "principal.key_id", "context.source"]
NUM_FACTS = ["input.n", "input.m", "context.hour", "context.rate"]
BOOL_FACTS = ["input.f", "tool.annotations.readOnlyHint"]
SET_FACTS = ["input.s", "input.t", "principal.scopes", "tool.tags"]
HEADER = "input { a: string, b2: string, n: number, m: number, f: bool, s: set, t: set }\n"


def q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


words = st.sampled_from(WORDS)
str_term = st.one_of(st.sampled_from(STR_FACTS), words.map(q))
num_lit = st.sampled_from([-1, 0, 1, 2.5, 3, 9, 17]).map(lambda v: str(v))
num_term = st.one_of(st.sampled_from(NUM_FACTS), num_lit, st.sampled_from(SET_FACTS).map(lambda s: f"count({s})"))
set_lit = st.lists(words, max_size=3).map(lambda ws: "[" + ", ".join(q(w) for w in ws) + "]")
set_term = st.one_of(st.sampled_from(SET_FACTS), set_lit)
all_facts = STR_FACTS + NUM_FACTS + BOOL_FACTS + SET_FACTS

atoms = st.one_of(
    st.sampled_from(["true", "false", *BOOL_FACTS]),
    st.tuples(num_term, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), num_term).map(" ".join),
    st.tuples(str_term, st.sampled_from(["==", "!="]), str_term).map(" ".join),
    st.tuples(str_term, st.sampled_from(["starts_with", "ends_with", "contains"]), str_term).map(" ".join),
    st.tuples(str_term, st.sampled_from(["in", "not in"]), set_term).map(" ".join),
    st.tuples(st.sampled_from(SET_FACTS), st.just("contains"), str_term).map(" ".join),
    st.tuples(set_term, st.just("intersects"), set_term).map(" ".join),
    st.tuples(num_term, st.sampled_from(["in", "not in"]), st.lists(num_lit, max_size=3)).map(
        lambda t: f"{t[0]} {t[1]} [{', '.join(t[2])}]"
    ),
    st.sampled_from(all_facts).map(lambda f: f"has({f})"),
)
conditions = st.recursive(
    atoms,
    lambda inner: st.one_of(
        inner.map(lambda c: f"not ({c})"),
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
    ),
    max_leaves=6,
)


@st.composite
def policies(draw: st.DrawFn) -> str:
    lines = [f"default {draw(st.sampled_from(['allow', 'deny']))}", HEADER]
    for i in range(draw(st.integers(1, 5))):
        lines.append(f"{draw(st.sampled_from(['allow', 'deny']))} r{i} when {draw(conditions)}")
    return "\n".join(lines)


def maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A fact that is present, absent (None here, dropped later) or of the wrong type."""
    wrong = st.one_of(st.integers(-3, 3), st.booleans(), st.text(max_size=2), st.lists(st.integers(), max_size=2))
    return st.one_of(values, values, st.none(), wrong)


text = st.one_of(words, st.text(max_size=4))
number = st.one_of(
    st.integers(-2, 20), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([2.5, 17, -1, 10**400])
)
str_set = st.lists(text, max_size=4)


@st.composite
def inputs(draw: st.DrawFn) -> dict[str, Any]:
    def obj(spec: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
        out = {k: draw(maybe(v)) for k, v in spec.items()}
        return {k: v for k, v in out.items() if v is not None}

    return normalize(
        {
            "input": obj({"a": text, "b2": text, "n": number, "m": number, "f": st.booleans(), "s": str_set,
                          "t": str_set}),
            "tool": {**obj({"name": text, "tags": str_set}), "annotations": obj({"readOnlyHint": st.booleans()})},
            "principal": obj({"key_id": text, "scopes": str_set}),
            "context": {"time": draw(st.integers(0, 2_000_000_000)), **obj({"rate": number, "source": text})},
        }
    )


def test_compiled_wasm_decides_like_the_interpreter() -> None:
    cases = [0]

    @settings(max_examples=250, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(policies(), st.lists(inputs(), min_size=8, max_size=12))
    def check(source: str, docs: list[dict[str, Any]]) -> None:
        policy = compile_policy(source, file="gen.policy")
        loaded = RUNTIME.load(policy.wasm)
        ref = policy.interpreter()
        for doc in docs:
            assert loaded.evaluate(doc) == ref.decide(doc), (source, doc)
            cases[0] += 1

    check()
    assert cases[0] >= 2000, cases[0]
