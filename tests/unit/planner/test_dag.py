"""Plan DAG parsing and validation: every bad plan is one clear line; orders are topological."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servers.planner.dag import parse_steps, resolve, sinks, topo_order
from servers.planner.planning import check_arguments
from vsm_mcp.errors import InvalidArguments


def s(id: str, after: list[str] | None = None, **kw: object) -> dict[str, object]:
    return {"id": id, "tool": "echo__echo", "arguments": kw.pop("arguments", {}), "after": after or [], **kw}


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([s("a", ["b"]), s("b", ["a"])], "plan has a cycle: "),
        ([s("a", ["a"])], "plan has a cycle: a -> a"),
        ([s("a"), s("b", ["c"])], "step 'b' runs after unknown step 'c'"),
        ([s("a"), s("a")], "step id 'a' is used twice"),
        ([s("a b")], "steps[0].id must be 1-64 characters"),
        ([s("a", arguments={"x": {"$from": "zz"}})], "step 'a' argument at /x reads from unknown step 'zz'"),
        ([s("a"), s("b", arguments={"x": {"$from": "a"}})], "reads from step 'a', which it does not run after"),
        ([s("a"), s("b", ["a"], arguments={"x": {"$from": "a", "path": "foo.bar"}})], "a path starts with structured"),
        ([s("a"), s("b", ["a"], arguments={"x": {"$from": "a", "path": "structured..x"}})], "bad path"),
        ([{"id": "a", "tool": "x__y", "colour": 1}], "step 'a': unknown field 'colour'"),
        ([s("a", retry={"attempts": 99})], "retry.attempts must be an integer 1-10"),
        ([s("a", timeout_s=-1)], "timeout_s must be a number of seconds > 0"),
        ([s("a", run="robot")], "'run' must be 'router' or 'agent'"),
        ([], "'steps' must be a non-empty list"),
    ],
)
def test_bad_plans_get_one_line(steps: list[dict[str, object]], message: str) -> None:
    with pytest.raises(InvalidArguments) as info:
        parse_steps(steps, 100)
    assert message in info.value.message
    assert "\n" not in info.value.message


def test_cycle_names_its_steps() -> None:
    with pytest.raises(InvalidArguments, match=r"plan has a cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"):
        parse_steps([s("x"), s("a", ["c", "x"]), s("b", ["a"]), s("c", ["b"])], 100)


def test_too_many_steps() -> None:
    with pytest.raises(InvalidArguments, match="plan has 11 steps; at most 10 are allowed"):
        parse_steps([s(f"s{i}") for i in range(11)], 10)


def test_transitive_reference_and_resolve() -> None:
    order = parse_steps(
        [s("c", ["b"], arguments={"v": {"$from": "a", "path": "structured.items[1].id"}, "w": [{"$from": "b"}]}),
         s("b", ["a"]), s("a")], 10,
    )
    assert [x.id for x in order] == ["a", "b", "c"]
    results = {"a": {"structured": {"items": [{"id": 1}, {"id": 2}]}}, "b": {"text": "hi"}}
    assert resolve(order[2].arguments, results) == {"v": 2, "w": [{"text": "hi"}]}
    with pytest.raises(InvalidArguments, match="path 'structured.items\\[1\\].id' does not exist"):
        resolve(order[2].arguments, {"a": {"structured": {"items": []}}, "b": {}})


def test_schema_check_skips_placeholders() -> None:
    order = parse_steps([s("a"), s("b", ["a"], arguments={"n": {"$from": "a", "path": "structured.n"}, "m": "x"})], 10)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "m": {"type": "integer"}},
              "required": ["n", "m"], "additionalProperties": False}
    with pytest.raises(InvalidArguments, match=r"step 'b' arguments for echo__echo at /m: 'x' is not of type 'integer'"):
        check_arguments(order[1], schema)
    order[1].arguments["m"] = 3
    check_arguments(order[1], schema)


@given(st.lists(st.lists(st.integers(0, 30), max_size=4), min_size=1, max_size=30))
def test_topological_order_respects_every_edge(edges: list[list[int]]) -> None:
    # step i may only depend on lower-numbered steps: always a DAG; shuffled input order.
    raw = [s(f"n{i}", sorted({f"n{d % i}" for d in deps}) if i else []) for i, deps in enumerate(edges)]
    order = [x.id for x in topo_order(parse_steps(list(reversed(raw)), 100))]
    pos = {sid: k for k, sid in enumerate(order)}
    for step in raw:
        for dep in step["after"]:  # type: ignore[union-attr]
            assert pos[dep] < pos[step["id"]]  # type: ignore[index]
    assert set(sinks(parse_steps(raw, 100))) <= set(order)
