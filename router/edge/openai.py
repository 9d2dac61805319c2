"""OpenAI-compatible edge: ``POST /v1/chat/completions`` (plain and ``stream: true``),
``POST /v1/embeddings`` and ``GET /v1/models``, served by the LLM-CDN engine.

The router never imports servers: the engine is the object the built-in ``llm`` server
(servers/llm_cdn) publishes as ``ctx.extras["llm_cdn"]``; until that server is loaded these
routes answer 503 saying so. Errors use OpenAI's shape ``{"error": {"message", "type", "param",
"code"}}`` so OpenAI clients (openai, OpenCode) show the reason. Every answer carries
``x-vsm-cache: hit | semantic | miss | shared | bypass`` and ``x-vsm-model`` (the model that answered).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from router.gate.ratelimit import retry_after_header
from router.gate.route import gated_route, principal
from vsm_mcp.auth import Principal
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import InvalidArguments, UpstreamUnavailable, VsmError

Authenticate = Callable[[Request], Awaitable[Principal]]
ENGINE_KEY = "llm_cdn"

_OPENAI_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    409: "conflict_error", 413: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable",
    504: "timeout",
}


class _Outcome(Protocol):
    body: dict[str, Any]
    cache: str
    model: str


class _StreamOutcome(Protocol):
    cache: str
    model: str
    body: dict[str, Any] | None
    chunks: AsyncIterator[dict[str, Any]] | None


class LlmEngine(Protocol):
    """What this edge needs from servers/llm_cdn/engine.py's Engine."""

    async def complete(self, tenant: str, request: dict[str, Any]) -> _Outcome: ...

    async def stream(self, tenant: str, request: dict[str, Any]) -> _StreamOutcome: ...

    async def embed(self, tenant: str, request: dict[str, Any]) -> _Outcome: ...

    def models(self) -> list[dict[str, Any]]: ...


# --- stream replay: a complete chat.completion as chat.completion.chunk events ------------------
# The engine always holds the whole answer (cached or fresh), so a stream is a replay: a role
# chunk, content in word-aligned pieces, one chunk per tool call, a finish chunk, an optional
# usage chunk, then [DONE] — what OpenAI-compatible clients expect from ``stream: true``.

PIECE = 48  # characters per content chunk (split at whitespace when possible)


def split_text(text: str, size: int = PIECE) -> list[str]:
    """Pieces whose concatenation is exactly ``text``."""
    if not text:
        return []
    parts = re.findall(r"\S*\s*", text)
    pieces: list[str] = []
    buf = ""
    for part in parts:
        if buf and len(buf) + len(part) > size:
            pieces.append(buf)
            buf = ""
        buf += part
    if buf:
        pieces.append(buf)
    return pieces


def chunks(body: dict[str, Any], include_usage: bool = False) -> Iterator[dict[str, Any]]:
    """The chunk objects of ``body`` (a chat.completion), in order."""
    base = {"id": body.get("id", "chatcmpl-vsm"), "object": "chat.completion.chunk",
            "created": body.get("created", 0), "model": body.get("model", "")}
    for choice in body.get("choices", []):
        idx = choice.get("index", 0)
        msg = choice.get("message") or {}

        def chunk(delta: dict[str, Any], finish: str | None = None, _idx: int = idx) -> dict[str, Any]:
            return {**base, "choices": [{"index": _idx, "delta": delta, "finish_reason": finish}]}

        yield chunk({"role": msg.get("role", "assistant"), "content": ""})
        for piece in split_text(msg.get("content") or ""):
            yield chunk({"content": piece})
        for i, call in enumerate(msg.get("tool_calls") or []):
            yield chunk({"tool_calls": [{"index": i, "id": call.get("id"), "type": call.get("type", "function"),
                                         "function": call.get("function", {})}]})
        yield chunk({}, choice.get("finish_reason") or "stop")
    if include_usage and body.get("usage"):
        yield {**base, "choices": [], "usage": body["usage"]}


def sse_events(body: dict[str, Any], include_usage: bool = False) -> Iterator[bytes]:
    """``data: <chunk>`` events followed by ``data: [DONE]``."""
    for c in chunks(body, include_usage):
        yield b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


async def _replay(body: dict[str, Any], include_usage: bool) -> AsyncIterator[bytes]:
    # An async generator: Starlette would run a plain iterator in a thread, one hop per chunk.
    for event in sse_events(body, include_usage):
        yield event


async def _live(chunks: AsyncIterator[dict[str, Any]], include_usage: bool) -> AsyncIterator[bytes]:
    """A miss streamed as it arrives; a failure after the first byte becomes an error event."""
    try:
        async for chunk in chunks:
            if not chunk.get("choices") and not include_usage:
                continue  # the usage-only chunk, requested upstream for the cache's token count
            if not include_usage:
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
            yield b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
    except VsmError as exc:
        yield b"data: " + json.dumps(openai_error_body(exc)).encode() + b"\n\n"
        return
    yield b"data: [DONE]\n\n"


def openai_error_body(exc: VsmError) -> dict[str, Any]:
    """``exc`` in OpenAI's error shape (the body of every error these routes answer)."""
    return {"error": {
        "message": exc.message, "type": _OPENAI_TYPES.get(exc.status, "server_error"),
        "param": exc.data.get("param"), "code": exc.data.get("code", exc.label),
    }}


def openai_error(exc: VsmError) -> JSONResponse:
    """A VsmError in OpenAI's error shape (with Retry-After when the error carries one)."""
    body = openai_error_body(exc)
    headers = {}
    if exc.data.get("retry_after") is not None:
        headers["retry-after"] = retry_after_header(float(exc.data["retry_after"]))
    return JSONResponse(body, status_code=exc.status, headers=headers)


def _no_cache(request: Request) -> bool:
    """``Cache-Control: no-cache`` / ``no-store`` asks for a fresh answer that is not stored."""
    value = request.headers.get("cache-control", "").lower()
    return "no-cache" in value or "no-store" in value


class LlmCollector:
    """Prometheus collector: the LLM-CDN counters, read from the engine at scrape time."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def describe(self) -> list[Any]:
        return []  # no fixed description: the families exist only once the llm server is loaded

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        engine = self.ctx.extras.get(ENGINE_KEY)
        if engine is None:
            return
        snap = engine.snapshot()
        lookups = CounterMetricFamily("vsm_llm_cache_lookups", "LLM-CDN requests by cache result.", labels=["result"])
        for result, n in (("hit", snap["hits"]["exact"]), ("semantic", snap["hits"]["semantic"]),
                          ("miss", snap["misses"]), ("shared", snap["shared"]), ("bypass", snap["bypass"])):
            lookups.add_metric([result], n)
        yield lookups
        calls = CounterMetricFamily("vsm_llm_upstream_calls", "LLM provider calls by model.", labels=["model"])
        errors = CounterMetricFamily("vsm_llm_upstream_errors", "Failed LLM provider calls by model.", labels=["model"])
        for model, n in snap["upstream_calls"].items():
            calls.add_metric([model], n)
        for model, n in snap["upstream_errors"].items():
            errors.add_metric([model], n)
        yield calls
        yield errors
        yield CounterMetricFamily("vsm_llm_tokens_saved", "Tokens served from the LLM cache.", value=snap["tokens_saved"])
        latency = GaugeMetricFamily("vsm_llm_latency_ms", "Recent LLM-CDN latency percentiles.", labels=["quantile"])
        for name, v in snap["latency_ms"].items():
            latency.add_metric([name], v)
        yield latency


def openai_routes(ctx: ServerContext, authenticate: Authenticate | None = None, *, metrics: Any = None) -> list[Route]:
    """The /v1 routes; ``authenticate`` maps a request to its principal (the gate's by default).
    ``metrics`` (vsm_mcp.telemetry.Metrics) gets the LLM-CDN counters on its registry."""
    auth = authenticate or principal  # the gate's principal; tests may pass their own
    if metrics is not None:
        metrics.registry.register(LlmCollector(ctx))
    max_body = ctx.settings.max_body_bytes

    def engine() -> LlmEngine:
        found = ctx.extras.get(ENGINE_KEY)
        if found is None:
            raise UpstreamUnavailable(
                "the LLM-CDN is not loaded: add the built-in 'llm' server to the manifest",
                data={"code": "llm_cdn_not_loaded"},
            )
        return found  # type: ignore[no-any-return]

    async def read_json(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > max_body:
            raise InvalidArguments(f"request body is larger than {max_body} bytes")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise InvalidArguments(f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise InvalidArguments("request body must be a JSON object")
        return body

    async def chat(request: Request) -> Response:
        try:
            principal = await auth(request)
            body = await read_json(request)
            if _no_cache(request):
                body["cache"] = False
            if body.get("stream"):
                return await chat_stream(principal, body)
            out = await engine().complete(principal.tenant_id, body)
        except VsmError as exc:
            return openai_error(exc)
        return JSONResponse(out.body, headers={"x-vsm-cache": out.cache, "x-vsm-model": out.model})

    async def chat_stream(principal: Principal, body: dict[str, Any]) -> Response:
        out = await engine().stream(principal.tenant_id, body)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        headers = {"x-vsm-cache": out.cache, "x-vsm-model": out.model, "cache-control": "no-cache"}
        if out.body is not None:
            events = _replay(out.body, include_usage)
        else:
            assert out.chunks is not None
            events = _live(out.chunks, include_usage)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)

    async def embeddings(request: Request) -> Response:
        try:
            principal = await auth(request)
            body = await read_json(request)
            out = await engine().embed(principal.tenant_id, body)
        except VsmError as exc:
            return openai_error(exc)
        return JSONResponse(out.body, headers={"x-vsm-cache": out.cache, "x-vsm-model": out.model})

    async def models(request: Request) -> Response:
        try:
            await auth(request)
            data = engine().models()
        except VsmError as exc:
            return openai_error(exc)
        return JSONResponse({"object": "list", "data": data})

    # Declared to the gate as the llm server's tools they amount to: scope llm:call, the tenant's
    # policy on llm_complete / llm_embed, errors (429 included) in OpenAI's shape.
    def route(path: str, fn: Any, method: str, action: str) -> Route:
        return gated_route(path, fn, methods=[method], capability="llm:call", action=action, render=openai_error_body)

    return [
        route("/v1/chat/completions", chat, "POST", "llm__llm_complete"),
        route("/v1/embeddings", embeddings, "POST", "llm__llm_embed"),
        route("/v1/models", models, "GET", "llm__llm_models"),
    ]
