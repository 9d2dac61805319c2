"""Public names: valid, bounded, unique and independent of load order (property tests)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from router.registry import names

part = st.text(min_size=1, max_size=80)
pairs = st.lists(st.tuples(part, part), min_size=1, max_size=40)


@given(pairs)
@settings(max_examples=200, deadline=None)
def test_every_name_is_valid_and_unique(ps: list[tuple[str, str]]) -> None:
    mapping = names.assign(ps)
    assert set(mapping) == set(ps)
    assert len(set(mapping.values())) == len(mapping)
    for name in mapping.values():
        assert names.VALID.match(name), name
        assert len(name) <= 64


@given(pairs, st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None)
def test_mapping_does_not_depend_on_order(ps: list[tuple[str, str]], rnd) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(ps)
    rnd.shuffle(shuffled)
    assert names.assign(ps) == names.assign(shuffled)


def test_plain_names_are_kept() -> None:
    assert names.assign([("storage", "put")]) == {("storage", "put"): "storage__put"}


def test_collision_is_resolved_deterministically() -> None:
    # "a.b" and "a_b" both sanitize to "a_b": the sorted-first pair keeps the plain name.
    m = names.assign([("s", "a_b"), ("s", "a.b")])
    assert m[("s", "a.b")] == "s__a_b"
    assert m[("s", "a_b")].startswith("s__a_b_") and len(m[("s", "a_b")]) == len("s__a_b_") + 8


def test_long_names_are_cut_with_a_hash() -> None:
    long_tool = "x" * 100
    m = names.assign([("srv", long_tool), ("srv", long_tool + "y")])
    a, b = m[("srv", long_tool)], m[("srv", long_tool + "y")]
    assert len(a) == len(b) == 64 and a != b
