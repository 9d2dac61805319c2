"""Live streaming of a cache miss: upstream chunks reach the caller as they arrive, while the
whole answer is assembled, stored and handed to identical requests that arrived meanwhile.

The pump runs as the single-flight task (so a caller that disconnects does not stop it: the
answer is still stored) and feeds the leading caller through a queue. Everything before the
first chunk (fallbacks, retries, breaker) happens before the caller's response starts, so those
failures are plain HTTP errors; a failure later ends the stream with an error event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from vsm_mcp.errors import VsmError

Item = tuple[str, Any]  # ("model", name) | ("chunk", dict) | ("end", None) | ("error", exc) | ("body", result)


@dataclass
class StreamOutcome:
    """A streamed answer: ``body`` to replay (hit, semantic, shared) or live ``chunks`` (miss, bypass)."""

    cache: str
    model: str
    body: dict[str, Any] | None = None
    chunks: AsyncIterator[dict[str, Any]] | None = None


def assemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``chat.completion`` a list of ``chat.completion.chunk`` objects adds up to."""
    head = chunks[0] if chunks else {}
    states: dict[int, dict[str, Any]] = {}
    usage = None
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            st = states.setdefault(choice.get("index", 0), {"role": "assistant", "text": [], "calls": {}, "finish": None})
            delta = choice.get("delta") or {}
            st["role"] = delta.get("role") or st["role"]
            st["text"].append(delta.get("content") or "")
            for call in delta.get("tool_calls") or []:
                slot = st["calls"].setdefault(call.get("index", 0), {"type": "function", "function": {"name": "", "arguments": ""}})
                if call.get("id"):
                    slot["id"] = call["id"]
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            st["finish"] = choice.get("finish_reason") or st["finish"]
    choices = []
    for index in sorted(states):
        st = states[index]
        message: dict[str, Any] = {"role": st["role"]}
        text = "".join(st["text"])
        if text or not st["calls"]:
            message["content"] = text
        if st["calls"]:
            message["tool_calls"] = [st["calls"][i] for i in sorted(st["calls"])]
        choices.append({"index": index, "message": message, "finish_reason": st["finish"] or "stop"})
    body: dict[str, Any] = {"id": head.get("id", "chatcmpl-vsm"), "object": "chat.completion",
                            "created": head.get("created", 0), "model": head.get("model", ""), "choices": choices}
    if usage:
        body["usage"] = usage
    return body


async def drain(queue: asyncio.Queue[Item]) -> AsyncIterator[dict[str, Any]]:
    """The leading caller's view of the pump: chunks until the end (or the error that ended it)."""
    while True:
        kind, value = await queue.get()
        if kind == "chunk":
            yield value
        elif kind == "error":
            raise value if isinstance(value, VsmError) else VsmError(str(value))
        else:
            return
