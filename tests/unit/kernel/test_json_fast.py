"""vsm_mcp/json_fast.py: orjson where it can, the standard library where orjson refuses."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_mcp import json_fast

values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=20,
)


@given(values)
def test_round_trip_equals_the_standard_library(value: Any) -> None:
    raw = json_fast.dumps(value)
    assert isinstance(raw, bytes)
    assert json_fast.loads(raw) == json.loads(raw) == json.loads(json.dumps(value))


def test_what_orjson_refuses_falls_back() -> None:
    assert json.loads(json_fast.dumps({1: "a"})) == {"1": "a"}  # non-string key
    assert json_fast.loads(json_fast.dumps(2**80)) == 2**80  # beyond 64 bits
    assert math.isnan(json_fast.loads(b'{"x": NaN}')["x"])  # accepted by json, refused by orjson
    assert json_fast.dumps({"é": "ü"}) == '{"é":"ü"}'.encode()  # compact UTF-8 either way


def test_not_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        json_fast.loads(b"{not json")
