"""The fast CEL closures give cel-python's answer: random expressions over random events, each
evaluated by the closure (deferring to cel-python where it must) and by cel-python alone."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servers.cep.cel import ERR, CelSyntaxError, Expr

PATHS = ["data.n", "data.m", "data.s", "data.t", "data.f", "data.b", "data.z", "data.l", "data.o.k", "data.o",
         "data.missing", "topic", "data.l[0]", "data.l[3]", 'data.o["k"]', "nope"]
LITS = ["0", "1", "3", "-2", "2.5", "0.0", '"a"', '"ab"', "''", "true", "false", "null"]


def exprs() -> st.SearchStrategy[str]:
    atom = st.sampled_from(PATHS + LITS)
    unary = st.one_of(atom, atom.map(lambda a: f"size({a})"), atom.map(lambda a: f"has({a})" if "." in a and "[" not in a else a))

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binop = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "&&", "||", "+", "-", "*", "in"])
        return st.one_of(
            st.tuples(inner, binop, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda a: f"!({a})"),
            inner.map(lambda a: f"-({a})"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
            st.lists(inner, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
            st.tuples(inner, st.sampled_from(["startsWith", "endsWith", "contains"]), inner).map(
                lambda t: f"({t[0]}).{t[1]}({t[2]})"),
        )

    return st.recursive(unary, extend, max_leaves=6)


scalars = st.one_of(st.integers(-3, 3), st.sampled_from([0.0, 2.5, -1.0]), st.sampled_from(["", "a", "ab", "b"]),
                    st.booleans(), st.none())
data = st.fixed_dictionaries(
    {},
    optional={
        "n": st.integers(-3, 3), "m": st.integers(-3, 3), "s": st.sampled_from(["", "a", "ab", "ba"]),
        "t": scalars, "f": st.sampled_from([0.0, 2.5, -1.0, 3.0]), "b": st.booleans(), "z": st.none(),
        "l": st.lists(scalars, max_size=3), "o": st.dictionaries(st.sampled_from(["k", "j"]), scalars, max_size=2),
    },
)


def reference(source: str, env: dict[str, Any]) -> Any:
    e = Expr(source)
    e.fast = None  # cel-python alone
    return e.raw(env)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=exprs(), d=data)
def test_fast_closures_agree_with_cel_python(source: str, d: dict[str, Any]) -> None:
    env = {"topic": "tool.failed", "data": d}
    fast = Expr(source)
    got, want = fast.raw(env), reference(source, env)
    if want is ERR:
        assert got is ERR
    else:
        assert got == want and type(got) is type(want), (source, env)


def test_common_predicates_take_the_fast_path() -> None:
    e = Expr('data.server == "x" && data.n > 3 && has(data.tags) && data.name.startsWith("a")')
    assert e.fast is not None
    assert e.test({"data": {"server": "x", "n": 4, "tags": [], "name": "ab"}})
    assert not e.test({"data": {"server": "x", "n": 4, "name": "ab"}})  # has() false
    assert e.deferred == 0


def test_outside_the_subset_cel_python_decides() -> None:
    assert Expr("data.l.exists(x, x == 2)").test({"data": {"l": [1, 2]}})
    assert Expr("data.n / 2 == 1").test({"data": {"n": 3}})
    assert not Expr("data.n == 1.0").test({"data": {"n": 1}})  # int vs double: no overload in cel-python
    assert Expr("data.missing == 1 || true").test({"data": {}})


def test_syntax_error_has_an_offset() -> None:
    with pytest.raises(CelSyntaxError) as info:
        Expr('data.x == "a" && ) foo')
    assert info.value.offset == 17
