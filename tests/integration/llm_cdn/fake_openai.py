"""A local fake of the OpenAI HTTP API for tests and benchmarks (a third-party service, so faked).

It speaks ``POST /v1/chat/completions`` (plain and ``stream: true``), ``POST /v1/embeddings`` and
``GET /v1/models``; counts calls per model; and can be told, per model, to fail (500), rate-limit
(429), stall, or answer after a fixed latency. Served by uvicorn on 127.0.0.1 in a thread, so the
code under test reaches it over real HTTP (litellm's own client path).

The answer text is ``"<model> says: <last user text> [call <n>]"`` where ``n`` counts calls to
that model: a test can tell a cached answer (same ``n``) from a fresh one; ``FakeState.answer``
replaces it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.ports import free_port


@dataclass
class FakeState:
    """What the fake does; tests change it between requests (plain attribute writes)."""

    latency_s: float = 0.0
    mode: dict[str, str] = field(default_factory=dict)  # model -> ok | fail | 429 | stall | 429once
    calls: Counter[str] = field(default_factory=Counter)
    stall_s: float = 30.0
    # The answer text for a chat request body; None = the echo below (tool search's rerank tests
    # and benchmark answer with a ranking of the tools in the prompt).
    answer: Callable[[dict[str, Any]], str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, model: str) -> int:
        with self.lock:
            self.calls[model] += 1
            return self.calls[model]

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.calls.values())


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for msg in reversed(messages):
        if msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content)
    return ""


def _vector(text: str, dims: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [b / 255.0 for b in digest[:dims]]


def create_fake_app(state: FakeState) -> Starlette:
    async def misbehave(model: str) -> Response | None:
        mode = state.mode.get(model, "ok")
        if mode == "429once":
            state.mode[model] = "ok"
            return JSONResponse({"error": {"message": "slow down", "type": "rate_limit"}}, 429)
        if mode == "429":
            return JSONResponse({"error": {"message": "slow down", "type": "rate_limit"}}, 429)
        if mode == "fail":
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, 500)
        if mode == "stall":
            await asyncio.sleep(state.stall_s)
        if state.latency_s:
            await asyncio.sleep(state.latency_s)
        return None

    async def chat(request: Request) -> Response:
        body = await request.json()
        model = body["model"]
        n = state.count(model)
        bad = await misbehave(model)
        if bad is not None:
            return bad
        text = state.answer(body) if state.answer else f"{model} says: {_last_user_text(body['messages'])} [call {n}]"
        created = int(time.time())
        if body.get("stream"):
            return StreamingResponse(_stream(model, text, created), media_type="text/event-stream")
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        return JSONResponse({
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        })

    async def embeddings(request: Request) -> Response:
        body = await request.json()
        model = body["model"]
        state.count(model)
        bad = await misbehave(model)
        if bad is not None:
            return bad
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": _vector(str(t))} for i, t in enumerate(inputs)]
        return JSONResponse({"object": "list", "data": data, "model": model,
                             "usage": {"prompt_tokens": 3, "total_tokens": 3}})

    async def models(_request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models),
    ])


async def _stream(model: str, text: str, created: int) -> AsyncIterator[bytes]:
    base = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": created, "model": model}
    first = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    yield f"data: {json.dumps(first)}\n\n".encode()
    for word in text.split(" "):
        chunk = {**base, "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
        yield f"data: {json.dumps(chunk)}\n\n".encode()
    last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    yield f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode()



@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("fake server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def fake_openai(state: FakeState | None = None) -> Iterator[tuple[str, FakeState]]:
    """Yields (base URL ending in /v1, state)."""
    st = state or FakeState()
    with serve_app(create_fake_app(st)) as url:
        yield f"{url}/v1", st
