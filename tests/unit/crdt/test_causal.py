"""Causal context: set semantics, compaction, and the HLC."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_mcp.crdt import CausalContext, HybridClock

dots = st.lists(st.integers(0, 35), max_size=20).map(lambda xs: [("abc"[x % 3], 1 + x // 3) for x in xs])


@settings(max_examples=1000, deadline=None)
@given(dots, dots)
def test_context_behaves_as_a_set_of_dots(xs: list[tuple[str, int]], ys: list[tuple[str, int]]) -> None:
    a, b = CausalContext(cloud=xs), CausalContext(cloud=ys)
    assert set(a.dots()) == set(xs)
    assert a.dot_count() == len(set(xs))
    u = a.copy()
    u.join(b)
    assert set(u.dots()) == set(xs) | set(ys)
    assert set(a.minus(b).dots()) == set(xs) - set(ys)
    assert a.leq(u) and b.leq(u)
    assert a.leq(b) == set(xs).issubset(ys)
    # Compaction is canonical: the same set, however built, is one representation.
    one_by_one = CausalContext()
    for d in sorted(set(xs) | set(ys), reverse=True):
        one_by_one.add(d)
    assert one_by_one == u
    for node, extra in u.cloud.items():
        assert min(extra) > u.vv.get(node, 0) + 1


def test_a_closed_gap_folds_the_cloud_into_the_vector() -> None:
    ctx = CausalContext(cloud=[("a", 1), ("a", 3), ("a", 4)])
    assert ctx.vv == {"a": 1} and ctx.cloud == {"a": {3, 4}}
    assert ctx.next_dot("a") == ("a", 5)
    ctx.add(("a", 2))
    assert ctx.vv == {"a": 4} and ctx.cloud == {}
    assert ctx.metadata_size() == 1


def test_hybrid_clock_never_goes_back_and_passes_observed_stamps() -> None:
    t = [100]
    clock = HybridClock(lambda: t[0])
    assert clock.now() == (100, 0)
    assert clock.now() == (100, 1)
    t[0] = 50  # the wall clock stepped back
    assert clock.now() == (100, 2)
    clock.observe((500, 7))
    assert clock.now() == (500, 8)
    t[0] = 900
    assert clock.now() == (900, 0)
