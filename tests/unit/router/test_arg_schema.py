"""router/arg_schema.py: the Rust verdict agrees with the Python jsonschema reference, and a
rejection still names the field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from router.arg_schema import ArgumentSchema, ArgumentSchemas
from vsm_mcp.errors import InvalidArguments

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False), st.text(max_size=6)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["a", "b", "c", "text", "n"]), inner, max_size=4)
    ),
    max_leaves=12,
)
type_names = st.sampled_from(["null", "boolean", "integer", "number", "string", "array", "object"])


def _leaf_schemas() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda t: {"type": t}, type_names),
        st.builds(lambda ts: {"type": ts}, st.lists(type_names, min_size=1, max_size=3, unique=True)),
        st.builds(lambda v: {"enum": v}, st.lists(json_scalars, min_size=1, max_size=3)),
        st.builds(lambda v: {"const": v}, json_scalars),
        st.builds(lambda lo, hi: {"type": "number", "minimum": lo, "exclusiveMaximum": hi},
                  st.integers(-50, 50), st.integers(-50, 50)),
        st.builds(lambda lo, hi: {"type": "string", "minLength": lo, "maxLength": hi},
                  st.integers(0, 4), st.integers(0, 6)),
        st.builds(lambda p: {"type": "string", "pattern": p}, st.sampled_from(["^a", "b$", "[0-9]+", "^$"])),
        st.builds(lambda m: {"multipleOf": m}, st.sampled_from([1, 2, 0.5, 3])),
    )


schemas = st.recursive(
    _leaf_schemas(),
    lambda inner: st.one_of(
        st.builds(
            lambda props, req, extra: {"type": "object", "properties": props, "required": req,
                                       "additionalProperties": extra},
            st.dictionaries(st.sampled_from(["a", "b", "c", "text", "n"]), inner, max_size=3),
            st.lists(st.sampled_from(["a", "b", "text"]), max_size=2, unique=True),
            st.one_of(st.booleans(), inner),
        ),
        st.builds(lambda it, lo: {"type": "array", "items": it, "minItems": lo}, inner, st.integers(0, 3)),
        st.builds(lambda pre, it: {"prefixItems": pre, "items": it}, st.lists(inner, min_size=1, max_size=2), st.one_of(st.booleans(), inner)),
        st.builds(lambda xs: {"anyOf": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"oneOf": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"allOf": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
        st.just({"$ref": "#/$defs/d"}),  # resolved against the root's $defs (below)
        st.builds(lambda a, b: {"if": a, "then": b}, inner, inner),
        st.builds(lambda d: {"type": "object", "dependentRequired": {"a": d}},
                  st.lists(st.sampled_from(["b", "c"]), unique=True)),
    ),
    max_leaves=8,
)


@settings(max_examples=600, deadline=None)
@given(schemas, _leaf_schemas(), json_values)
def test_fast_verdict_matches_the_python_reference(body: dict[str, Any], d: dict[str, Any], instance: Any) -> None:
    schema = {**body, "$defs": {"d": d}}
    compiled = ArgumentSchema(schema)
    assert compiled.full is not None, schema  # the generator makes valid schemas only
    assert compiled.fast is not None, schema  # every schema of this subset compiles on the Rust side
    assert compiled.fast.is_valid(instance) == Draft202012Validator(schema).is_valid(instance), (schema, instance)


def test_a_rejection_names_the_field_and_the_schema_path() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]}
    compiled = ArgumentSchemas().get("h1", schema)
    compiled.check({"n": 3}, "t")
    with pytest.raises(InvalidArguments) as bad:
        compiled.check({"n": 0}, "t")
    assert bad.value.data == {"tool": "t", "field": "n", "schema_path": "properties/n/minimum"}
    with pytest.raises(InvalidArguments) as missing:
        compiled.check({}, "t")
    assert "argument 'n'" in missing.value.message


def test_a_remote_ref_is_never_fetched_and_the_python_validator_judges() -> None:
    compiled = ArgumentSchema({"type": "object", "properties": {"x": {"$ref": "http://127.0.0.1:9/nothing.json"}}})
    assert compiled.fast is None
    compiled.check({}, "t")  # no x: nothing to resolve


def test_a_broken_schema_leaves_the_arguments_to_the_upstream() -> None:
    compiled = ArgumentSchema({"type": "no-such-type"})
    assert compiled.full is None and compiled.fast is None
    compiled.check({"anything": 1}, "t")


def test_the_cache_compiles_once_per_hash() -> None:
    cache = ArgumentSchemas()
    a = cache.get("h", {"type": "object"})
    assert cache.get("h", {"type": "object"}) is a
    assert cache.get("other", None).full is not None  # no schema: any object
