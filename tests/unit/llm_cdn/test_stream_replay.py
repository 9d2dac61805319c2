"""A complete answer replayed as chunks reassembles to exactly the same message."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from router.edge.openai import chunks, split_text, sse_events


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400), st.integers(1, 80))
def test_split_text_concatenates_back(text: str, size: int) -> None:
    pieces = split_text(text, size)
    assert "".join(pieces) == text
    assert all(pieces)


def _reassemble(events: list[dict[str, Any]]) -> dict[str, Any]:
    content, calls, finish, role = "", [], None, None
    for ev in events:
        for ch in ev["choices"]:
            d = ch["delta"]
            role = d.get("role", role)
            content += d.get("content") or ""
            calls.extend(d.get("tool_calls") or [])
            finish = ch["finish_reason"] or finish
    return {"role": role, "content": content, "calls": calls, "finish": finish}


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300), st.sampled_from(["stop", "length", "tool_calls"]), st.booleans())
def test_chunks_reassemble_to_the_message(text: str, finish: str, with_call: bool) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}
    body = {"id": "x", "created": 1, "model": "m", "usage": {"total_tokens": 3},
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": text, **({"tool_calls": [call]} if with_call else {})}}]}
    events = list(chunks(body))
    got = _reassemble(events)
    assert got["content"] == text and got["finish"] == finish and got["role"] == "assistant"
    assert [c["function"] for c in got["calls"]] == ([call["function"]] if with_call else [])
    assert all(e["object"] == "chat.completion.chunk" for e in events)


def test_sse_ends_with_done_and_usage_on_request() -> None:
    body = {"choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}], "usage": {"total_tokens": 2}}
    raw = b"".join(sse_events(body, include_usage=True)).decode()
    frames = [f.removeprefix("data: ") for f in raw.strip().split("\n\n")]
    assert frames[-1] == "[DONE]"
    assert json.loads(frames[-2])["usage"] == {"total_tokens": 2}
    assert "usage" not in b"".join(sse_events(body)).decode()


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["stop", "length", "tool_calls"]), st.booleans(), st.integers(1, 3))
def test_assemble_inverts_chunks(text: str, finish: str, with_call: bool, n: int) -> None:
    from servers.llm_cdn.live import assemble

    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}
    choices = []
    for i in range(n):
        message: dict[str, Any] = {"role": "assistant"}
        if text or not with_call:
            message["content"] = text
        if with_call:
            message["tool_calls"] = [call]
        choices.append({"index": i, "message": message, "finish_reason": finish})
    body = {"id": "x", "object": "chat.completion", "created": 5, "model": "m", "choices": choices,
            "usage": {"total_tokens": 3}}
    assert assemble(list(chunks(body, include_usage=True))) == body
