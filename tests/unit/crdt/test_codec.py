"""Serialization: round trip, determinism, and clear errors on bad input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from tests.unit.crdt.sim import network_history, run
from vsm_mcp.crdt import Belief, BeliefSet, Replica, decode, encode, to_obj
from vsm_mcp.errors import InvalidArguments


@settings(max_examples=300, deadline=None)
@given(network_history)
def test_round_trip_is_exact_and_deterministic(ops: list[tuple[Any, ...]]) -> None:
    cluster = run(ops)
    for state in [*cluster.states(), *cluster.deltas]:
        data = encode(state)
        back = decode(data)
        assert back == state
        assert back.digest == state.digest
        assert encode(back) == data


def test_nested_json_values_encode_identically_whatever_the_key_order() -> None:
    a, b = Replica("n"), Replica("n")
    a.clock._now = b.clock._now = lambda: 1  # same stamps
    a.assert_belief("k", Belief({"x": 1, "y": [1, {"b": 2, "a": 1}]}, 0.25, "src", ("e1",)))
    b.assert_belief("k", Belief({"y": [1, {"a": 1, "b": 2}], "x": 1}, 0.25, "src", ("e1",)))
    assert encode(a.state) == encode(b.state)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "expected an object with v=1"),
        ({"v": 1, "n": ["a"], "vv": [[3, 1]]}, "node index 3 out of range"),
        ({"v": 1, "n": ["a"], "vv": [[0, 0]]}, "vv counter must be an integer ≥ 1"),
        ({"v": 1, "n": ["a"], "e": [["k", 0, 1, 0, 0, 2.0, "", [], 1]]}, "confidence must be between 0 and 1"),
        ({"v": 1, "n": ["a"], "e": [["k", 0, 1, 0, 0, 0.5, "", "x", 1]]}, "evidence of 'k' must be a list"),
        ({"v": 1, "n": ["a"], "e": [["k", 0, 1]]}, "entries must be"),
        ({"v": 1, "n": ["a"], "e": [["k", 0, 1, 0, 0, 1, "", [], 1], ["j", 0, 1, 0, 0, 1, "", [], 2]]}, "share a dot"),
    ],
)
def test_malformed_input_names_the_problem(obj: Any, message: str) -> None:
    with pytest.raises(InvalidArguments, match=message):
        from vsm_mcp.crdt import from_obj

        from_obj(obj)


def test_not_json_is_a_clear_error() -> None:
    with pytest.raises(InvalidArguments, match="not valid JSON"):
        decode(b"{nope")


def test_entry_dots_are_added_to_the_context() -> None:
    state = decode(b'{"v":1,"n":["a"],"e":[["k",0,2,5,0,1.0,"s",[],true]]}')
    assert state.ctx.contains(("a", 2)) and not state.ctx.contains(("a", 1))
    assert isinstance(state, BeliefSet) and state.get("k") is not None
    assert to_obj(state)["cl"] == [[0, [2]]]
