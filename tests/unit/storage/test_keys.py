"""Key validation: a table of rules, and the invariant that an accepted key never leaves the root."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_mcp.errors import InvalidArguments
from vsm_mcp.storage.keys import MAX_KEY_BYTES, validate_bucket, validate_key, validate_prefix

from ...integration.storage.traversal import MALICIOUS_KEYS


@pytest.mark.parametrize("key", ["a", "a/b/c.txt", "dir/ünïcode ☃.bin", "a..b", ".hidden/x", "/".join(["x" * 255] * 3 + ["x" * 254, "y"])])
def test_good_keys_pass(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", MALICIOUS_KEYS)
def test_malicious_keys_rejected(key: str) -> None:
    with pytest.raises(InvalidArguments, match="invalid object key"):
        validate_key(key)


def test_length_limit_is_exact() -> None:
    longest = "/".join(["x" * 255] * 3 + ["x" * 254, "y"])
    assert len(longest) == MAX_KEY_BYTES and validate_key(longest)
    with pytest.raises(InvalidArguments, match="longer than"):
        validate_key(longest + "z")


def test_non_string_and_error_names_field() -> None:
    with pytest.raises(InvalidArguments) as info:
        validate_key(123)
    assert info.value.data["field"] == "key"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab./\\:\x00\n C")), max_size=30))
def test_accepted_keys_stay_under_the_root(key: str) -> None:
    try:
        validate_key(key)
    except InvalidArguments:
        return
    joined = posixpath.normpath(posixpath.join("/root", key))
    assert joined.startswith("/root/") and joined == "/root/" + key  # no segment rewrote the path


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\"),
                        min_size=1, max_size=20), min_size=1, max_size=5))
def test_ordinary_segments_accepted(segments: list[str]) -> None:
    key = "/".join(segments)
    if any(s in {".", ".."} for s in segments) or key[1:2] == ":":
        return
    assert validate_key(key) == key


@pytest.mark.parametrize("name", ["a", "docs", "my-bucket_2", "x" * 63])
def test_good_buckets(name: str) -> None:
    assert validate_bucket(name) == name


@pytest.mark.parametrize("name", ["", "-a", "A", "a.b", "a/b", "..", "x" * 64, None])
def test_bad_buckets(name: object) -> None:
    with pytest.raises(InvalidArguments, match="bucket"):
        validate_bucket(name)


def test_prefixes() -> None:
    assert validate_prefix("") == "" and validate_prefix("logs/") == "logs/"
    with pytest.raises(InvalidArguments):
        validate_prefix("../")
