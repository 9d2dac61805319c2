"""The lattice laws and the replication guarantees of the BeliefSet, checked by hypothesis."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.crdt.sim import KEYS, history, join_all, network_history, run
from vsm_mcp.crdt import Belief, BeliefSet, HybridClock, Replica, joined

MANY = settings(max_examples=1000, deadline=None)


@MANY
@given(history)
def test_join_is_commutative_associative_and_idempotent(ops: list[tuple[Any, ...]]) -> None:
    """The three lattice laws, each checked on every one of the 1,000 generated state triples."""
    a, b, c = run(ops).states()
    assert joined(a, b) == joined(b, a)
    assert joined(joined(a, b), c) == joined(a, joined(b, c))
    assert joined(a, a) == a
    ab = joined(a, b)
    assert joined(ab, b) == ab and joined(ab, a) == ab


@MANY
@given(history, st.randoms(use_true_random=False))
def test_applying_deltas_equals_joining_full_states(ops: list[tuple[Any, ...]], rnd: Any) -> None:
    cluster = run([op for op in ops if op[0] != "sync"])
    expected = join_all(cluster.states())
    # Deltas in order, as a delta group, and shuffled: all the same as the full-state join.
    in_order = join_all(cluster.deltas)
    assert in_order == expected
    shuffled = list(cluster.deltas)
    rnd.shuffle(shuffled)
    assert join_all(shuffled) == expected
    # And on top of a replica's own state.
    for state in cluster.states():
        assert join_all([state, *shuffled]) == expected


@MANY
@given(network_history)
def test_lossy_network_then_anti_entropy_converges(ops: list[tuple[Any, ...]]) -> None:
    cluster = run(ops)  # deltas reordered, duplicated and dropped
    expected = join_all(cluster.states())
    cluster.anti_entropy()
    for state in cluster.states():
        assert state == expected
        assert state.digest == expected.digest
    # Once everything is delivered the context is a plain version vector: bounded metadata.
    assert expected.ctx.cloud == {}
    assert expected.ctx.metadata_size() <= 3


@MANY
@given(history, st.sampled_from(KEYS), st.integers(0, 3))
def test_concurrent_add_and_remove_add_wins(ops: list[tuple[Any, ...]], key: str, value: int) -> None:
    cluster = run(ops)
    cluster.sync_all()
    a, b, _ = cluster.replicas
    add = a.assert_belief(key, Belief({"v": value}, 0.9, "adder"))
    remove = b.retract(key)
    a_state, b_state = a.state.copy(), b.state.copy()
    if remove is not None:
        a.join(remove)
    b.join(add)
    assert a.state == b.state
    won = a.state.get(key)
    assert won is not None and won.belief.value == {"v": value}
    assert joined(a_state, b_state) == a.state


@MANY
@given(history, st.sampled_from(KEYS), st.lists(st.integers(0, 3), min_size=3, max_size=3), st.permutations([0, 1, 2]))
def test_equal_clock_concurrent_writes_resolve_identically(
    ops: list[tuple[Any, ...]], key: str, values: list[int], order: list[int]
) -> None:
    cluster = run(ops)
    cluster.sync_all()
    cluster.wall = 10_000  # every replica's physical clock reads the same
    for r in cluster.replicas:
        r.clock.wall, r.clock.logical = 0, 0  # …and no replica is ahead: the stamps tie exactly
    deltas = [r.assert_belief(key, Belief(values[i], 1.0, f"n{i}")) for i, r in enumerate(cluster.replicas)]
    assert len({next(iter(d.entries.values())).stamp for d in deltas}) == 1
    for i, r in enumerate(cluster.replicas):
        for j in order:
            if j != i:
                r.join(deltas[j])
    winners = {r.state.get(key) for r in cluster.replicas}
    assert len(winners) == 1
    (winner,) = winners
    assert winner is not None and winner.dot[0] == "n2"  # tie broken by node id, the largest
    assert winner.belief.value == values[2]
    assert len(cluster.replicas[0].state.siblings(key)) == 3


def test_a_write_after_seeing_another_replaces_it_whatever_the_clocks() -> None:
    fast = Replica("z-fast", clock=HybridClock(lambda: 10_000))
    slow = Replica("a-slow", clock=HybridClock(lambda: 5))
    slow.join(fast.assert_belief("k", Belief("old")))
    fast.join(slow.assert_belief("k", Belief("new")))
    for r in (fast, slow):
        assert [e.belief.value for e in r.state.siblings("k")] == ["new"]


def test_retract_of_an_absent_key_is_no_delta() -> None:
    assert Replica("n").retract("nope") is None


def test_delta_of_a_write_is_small_and_state_has_no_tombstones() -> None:
    r = Replica("n0")
    for i in range(100):
        r.assert_belief(f"k{i}", Belief(i))
    for i in range(100):
        r.retract(f"k{i}")
    assert len(r.state) == 0 and r.state.entries == {}
    assert r.state.ctx.metadata_size() == 1  # just {n0: 200}
    assert BeliefSet() != r.state
