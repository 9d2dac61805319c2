"""Fingerprint properties: equal inputs give equal keys; any answer-changing change gives a new key."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from servers.llm_cdn.fingerprint import IGNORED_FIELDS, canonical_request, fingerprint

text = st.text(max_size=30)
role = st.sampled_from(["system", "user", "assistant"])
json_leaf = st.one_of(st.integers(-5, 5), st.booleans(), text, st.none())
json_obj = st.dictionaries(st.text(min_size=1, max_size=8), json_leaf, max_size=5)
messages = st.lists(st.fixed_dictionaries({"role": role, "content": text}), min_size=1, max_size=4)
tool = st.fixed_dictionaries({
    "type": st.just("function"),
    "function": st.fixed_dictionaries({"name": st.text(min_size=1, max_size=10), "parameters": json_obj}),
})
requests = st.fixed_dictionaries(
    {"model": st.sampled_from(["a", "b/c", "gpt-x"]), "messages": messages},
    optional={
        "temperature": st.sampled_from([0, 0.5, 1.0, 1.3]),
        "top_p": st.sampled_from([0.1, 0.9, 1]),
        "max_tokens": st.integers(1, 4096),
        "seed": st.integers(0, 10**6),
        "tools": st.lists(tool, min_size=1, max_size=2),
        "response_format": st.sampled_from([{"type": "json_object"}, {"type": "text"}]),
        "stop": st.lists(text, min_size=1, max_size=2),
        "n": st.integers(1, 3),
    },
)


def _shuffled(obj: Any, rnd: random.Random) -> Any:
    """The same JSON value with every object's keys in a different order."""
    if isinstance(obj, dict):
        items = list(obj.items())
        rnd.shuffle(items)
        return {k: _shuffled(v, rnd) for k, v in items}
    if isinstance(obj, list):
        return [_shuffled(v, rnd) for v in obj]
    return obj


@settings(max_examples=150, deadline=None)
@given(requests, st.randoms(use_true_random=False), st.text(max_size=10), st.text(max_size=10))
def test_equal_inputs_give_equal_keys(req: dict[str, Any], rnd: random.Random, user: str, rid: str) -> None:
    other = _shuffled(json.loads(json.dumps(req)), rnd)
    other.update({"user": user, "request_id": rid, "stream": True, "stream_options": {"include_usage": True},
                  "metadata": {"trace": rid}})
    assert fingerprint(req) == fingerprint(other)


@settings(max_examples=100, deadline=None)
@given(json_obj, st.randoms(use_true_random=False), st.sampled_from([None, 1, 2]))
def test_tool_call_arguments_ignore_json_whitespace_and_order(args: dict[str, Any], rnd: random.Random, indent: int | None) -> None:
    def req(arguments: str) -> dict[str, Any]:
        call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
        return {"model": "m", "messages": [{"role": "assistant", "tool_calls": [call]}, {"role": "tool", "content": "x"}]}

    compact = json.dumps(args, separators=(",", ":"))
    spaced = json.dumps(_shuffled(args, rnd), indent=indent)
    assert fingerprint(req(compact)) == fingerprint(req(spaced))


def test_integral_float_equals_int() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert fingerprint({**base, "temperature": 0}) == fingerprint({**base, "temperature": 0.0})
    assert fingerprint({**base, "max_tokens": 5}) == fingerprint({**base, "max_completion_tokens": 5})


_CHANGES: dict[str, Any] = {
    "model": lambda r: {**r, "model": r["model"] + "-2"},
    "messages": lambda r: {**r, "messages": [*r["messages"], {"role": "user", "content": "more"}]},
    "content": lambda r: {**r, "messages": [{**r["messages"][0], "content": r["messages"][0]["content"] + "!"}, *r["messages"][1:]]},
    "role": lambda r: {**r, "messages": [{**r["messages"][0], "role": "developer"}, *r["messages"][1:]]},
    "temperature": lambda r: {**r, "temperature": (r.get("temperature") or 0) + 0.25},
    "top_p": lambda r: {**r, "top_p": 0.333 if r.get("top_p") != 0.333 else 0.5},
    "max_tokens": lambda r: {**r, "max_tokens": (r.get("max_tokens") or 0) + 1},
    "seed": lambda r: {**r, "seed": (r.get("seed") or 0) + 1},
    "tools": lambda r: {**r, "tools": [*(r.get("tools") or []), {"type": "function", "function": {"name": "zz"}}]},
    "response_format": lambda r: {**r, "response_format": {"type": "json_schema", "json_schema": {"name": "s"}}},
    "stop": lambda r: {**r, "stop": [*(r.get("stop") or []), "STOP"]},
    "n": lambda r: {**r, "n": (r.get("n") or 1) + 1},
    "unknown_field": lambda r: {**r, "frobnicate": 1},
}


@settings(max_examples=150, deadline=None)
@given(requests, st.sampled_from(sorted(_CHANGES)))
def test_any_answer_changing_change_gives_a_new_key(req: dict[str, Any], field: str) -> None:
    changed = _CHANGES[field](req)
    assert fingerprint(req) != fingerprint(changed), field


def test_kind_separates_chat_and_embeddings() -> None:
    req = {"model": "m", "input": "x"}
    assert fingerprint(req, "chat") != fingerprint(req, "embedding")


def test_ignored_fields_are_not_in_the_canonical_form() -> None:
    req = {"model": "m", "messages": [], **{f: "x" for f in IGNORED_FIELDS}}
    assert set(canonical_request(req)) == {"$kind", "model", "messages"}
