"""A scripted OpenAI-compatible model server for end-to-end tests (the model is a third-party
service, so it is the one thing faked — over real HTTP, in the shape of OpenAI's API).

It answers ``POST /v1/chat/completions`` (plain and ``stream: true``) and ``GET /v1/models``:

* when the conversation does not yet hold a tool result, it calls the first offered tool whose
  name contains ``tool_match`` with ``arguments`` (a tool call, ``finish_reason: tool_calls``);
* once a tool result is in the messages, it answers ``"done: <that result, cut>"``.

Every request is kept in ``requests`` so a test can check what the client sent. A ``respond``
function replaces those two rules (benchmarks/record_opencode_trace.py gives each task a plan).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Script:
    tool_match: str
    arguments: dict[str, Any]
    requests: list[dict[str, Any]] = field(default_factory=list)
    respond: Callable[[Script, dict[str, Any]], dict[str, Any]] | None = None


def _answer(script: Script, body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages") or []
    results = [m for m in messages if m.get("role") == "tool"]
    if results:
        content = results[-1].get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        return {"role": "assistant", "content": f"done: {text[:300]}"}
    names = [t.get("function", {}).get("name", "") for t in body.get("tools") or []]
    chosen = next((n for n in names if script.tool_match in n), None)
    if chosen is None:
        return {"role": "assistant", "content": f"no tool matching {script.tool_match!r} among {names}"}
    call = {"id": f"call_{len(script.requests)}", "type": "function",
            "function": {"name": chosen, "arguments": json.dumps(script.arguments)}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def _app(script: Script) -> Starlette:
    async def completions(request: Request) -> Response:
        body = await request.json()
        script.requests.append(body)
        msg = (script.respond or _answer)(script, body)
        finish = "tool_calls" if msg.get("tool_calls") else "stop"
        base = {"id": f"chatcmpl-{len(script.requests)}", "created": int(time.time()), "model": body.get("model", "x")}
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if not body.get("stream"):
            return JSONResponse({**base, "object": "chat.completion", "usage": usage,
                                 "choices": [{"index": 0, "message": msg, "finish_reason": finish}]})

        def chunks() -> Iterator[str]:
            delta: dict[str, Any] = {"role": "assistant"}
            if msg.get("content"):
                delta["content"] = msg["content"]
            if msg.get("tool_calls"):
                delta["tool_calls"] = [{**c, "index": i} for i, c in enumerate(msg["tool_calls"])]
            for d, fin in ((delta, None), ({}, finish)):
                yield "data: " + json.dumps({**base, "object": "chat.completion.chunk",
                                             "choices": [{"index": 0, "delta": d, "finish_reason": fin}]}) + "\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                yield "data: " + json.dumps({**base, "object": "chat.completion.chunk", "choices": [],
                                             "usage": usage}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "scripted", "object": "model", "owned_by": "test"}]})

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"]),
                             Route("/v1/models", models, methods=["GET"])])


@contextmanager
def scripted_model(
    tool_match: str, arguments: dict[str, Any],
    respond: Callable[[Script, dict[str, Any]], dict[str, Any]] | None = None,
) -> Iterator[tuple[str, Script]]:
    """``(base_url, script)`` of a running server (``base_url`` ends in ``/v1``)."""
    script = Script(tool_match, arguments, respond=respond)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_app(script), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1", script
    finally:
        server.should_exit = True
        thread.join(timeout=5)
