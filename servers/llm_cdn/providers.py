"""Upstream LLM calls through litellm: fallbacks, timeouts, retries, a breaker per provider.

Order for one request: the asked model, then its ``fallbacks`` in order. For each model its
provider's circuit breaker (``vsm_mcp.resilience.CircuitBreaker``) is consulted first; an open
circuit skips the model at once. A call answered 429 or 5xx is retried with exponential
backoff (``VSM_LLM_RETRIES`` times); a timeout, a connection failure or a rejected credential
is not retried but fails over to the next model. A 4xx that blames the request (400/422) is the
caller's error and is neither retried nor failed over. litellm's exceptions are mapped to
``vsm_mcp.errors`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cache
from typing import Any, cast

import anyio

from servers.llm_cdn.models_config import ModelSpec, ModelTable
from vsm_mcp.config import Settings
from vsm_mcp.errors import InvalidArguments, NotFound, UpstreamTimeout, UpstreamUnavailable, VsmError
from vsm_mcp.resilience import CircuitBreaker

# Request fields litellm must not receive twice or at all.
_NOT_FORWARDED = {"model", "messages", "stream", "stream_options", "input", "cache"}


@cache
def _litellm() -> Any:
    """Import litellm once, lazily (it takes seconds), offline (local cost map)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return litellm


def warm_up() -> None:
    """Import litellm in the background so the first request does not pay seconds for it."""
    threading.Thread(target=_litellm, name="litellm-import", daemon=True).start()


def preload() -> None:
    """Import litellm now, blocking (at once when it is loaded; waits for an import in progress)."""
    _litellm()


class _Retryable(Exception):
    """429 or 5xx from a provider: worth another attempt after a pause."""


class _ProviderDown(Exception):
    """The provider could not answer (timeout, connection, credentials); fail over, do not retry."""


def _classify(exc: BaseException) -> BaseException:
    """Map a litellm/openai exception to _Retryable, _ProviderDown or InvalidArguments."""
    lt = _litellm()
    name = type(exc).__name__
    msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else name
    if isinstance(exc, lt.Timeout | TimeoutError):
        return _ProviderDown(f"timed out ({name})")
    status = getattr(exc, "status_code", None)
    if isinstance(exc, lt.RateLimitError) or status == 429:
        return _Retryable(f"429 rate limited: {msg}")
    if isinstance(exc, lt.BadRequestError | lt.UnprocessableEntityError) and status in (400, 422):
        return InvalidArguments(f"the provider rejected the request: {msg}")
    if isinstance(status, int) and status >= 500:
        return _Retryable(f"{status}: {msg}")
    return _ProviderDown(f"{status or name}: {msg}")


def clean(obj: Any) -> Any:
    """A litellm response as plain OpenAI JSON: no None values, no provider-specific extras."""
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items() if v is not None and k != "provider_specific_fields"}
    if isinstance(obj, list):
        return [clean(v) for v in obj]
    return obj


def _body(resp: Any, model: str) -> dict[str, Any]:
    out: dict[str, Any] = clean(resp.model_dump() if hasattr(resp, "model_dump") else dict(resp))
    out["model"] = model
    return out


async def _chunks(first: Any, stream: Any, model: str, timeout: float) -> AsyncIterator[dict[str, Any]]:
    """The stream's chunks as plain JSON; a stall longer than ``timeout`` between chunks ends it."""
    chunk = first
    while chunk is not None:
        out = _body(chunk, model)
        yield out
        try:
            with anyio.fail_after(timeout):
                chunk = await anext(aiter(stream), None)
        except TimeoutError:
            raise UpstreamTimeout(f"model {model!r} stalled mid-stream for {timeout:g}s") from None
        except VsmError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped at this boundary
            raise UpstreamUnavailable(f"model {model!r} failed mid-stream: {_classify(exc)}") from None


class Providers:
    """Calls configured models; counts upstream calls; keeps one breaker per provider."""

    def __init__(self, table: ModelTable, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.table = table
        self.settings = settings
        self.clock = clock  # for the breakers; injectable so tests need not sleep
        self.breakers: dict[str, CircuitBreaker] = {}
        self.upstream_calls: Counter[str] = Counter()
        self.upstream_errors: Counter[str] = Counter()

    def spec(self, name: str, kind: str) -> ModelSpec:
        spec = self.table.get(name)
        if spec is None or spec.kind != kind:
            known = [m.name for m in self.table.models.values() if m.kind == kind]
            raise NotFound(
                f"model {name!r} is not configured for {kind}; configured: {', '.join(known) or '(none — set VSM_LLM_MODELS)'}",
                data={"code": "model_not_found"},
            )
        return spec

    def breaker(self, spec: ModelSpec) -> CircuitBreaker:
        b = self.breakers.get(spec.provider)
        if b is None:
            b = self.breakers[spec.provider] = CircuitBreaker(
                spec.provider, threshold=self.settings.llm_breaker_threshold,
                reset_after=self.settings.llm_breaker_reset_s, clock=self.clock,
            )
        return b

    async def chat(self, request: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """(OpenAI chat.completion JSON, name of the model that answered)."""
        params = {k: v for k, v in request.items() if k not in _NOT_FORWARDED and v is not None}

        def call(spec: ModelSpec, timeout: float) -> Awaitable[Any]:
            return cast(Awaitable[Any], _litellm().acompletion(
                model=spec.target, messages=request["messages"], api_base=spec.api_base or None,
                api_key=spec.api_key or None, timeout=timeout, num_retries=0, max_retries=0,
                drop_params=True, **params,
            ))

        resp, model = await self._chain(request["model"], "chat", call)
        return _body(resp, model), model

    async def chat_stream(self, request: dict[str, Any]) -> tuple[AsyncIterator[dict[str, Any]], str]:
        """(chunks of an upstream stream, name of the model that answered). Fallbacks, retries and
        the breaker apply until the first chunk has arrived; later failures end the iterator with
        UpstreamUnavailable / UpstreamTimeout."""
        params = {k: v for k, v in request.items() if k not in _NOT_FORWARDED and v is not None}

        async def call(spec: ModelSpec, timeout: float) -> tuple[Any, Any]:
            stream = await _litellm().acompletion(
                model=spec.target, messages=request["messages"], api_base=spec.api_base or None,
                api_key=spec.api_key or None, timeout=timeout, num_retries=0, max_retries=0,
                drop_params=True, stream=True, stream_options={"include_usage": True}, **params,
            )
            return await anext(aiter(stream), None), stream  # the first chunk proves the provider answers

        (first, stream), model = await self._chain(request["model"], "chat", call)
        timeout = self.spec(model, "chat").timeout_s or self.settings.llm_timeout_s
        return _chunks(first, stream, model, timeout), model

    async def embed(self, request: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """(OpenAI embeddings list JSON, name of the model that answered)."""
        params = {k: v for k, v in request.items() if k not in _NOT_FORWARDED and k != "user" and v is not None}

        def call(spec: ModelSpec, timeout: float) -> Awaitable[Any]:
            return cast(Awaitable[Any], _litellm().aembedding(
                model=spec.target, input=request["input"], api_base=spec.api_base or None,
                api_key=spec.api_key or None, timeout=timeout, num_retries=0, max_retries=0, **params,
            ))

        resp, model = await self._chain(request["model"], "embedding", call)
        return _body(resp, model), model

    async def _chain(
        self, name: str, kind: str, call: Callable[[ModelSpec, float], Awaitable[Any]]
    ) -> tuple[Any, str]:
        first = self.spec(name, kind)
        reasons: list[str] = []
        for model in (first.name, *first.fallbacks):
            spec = self.spec(model, kind)
            breaker = self.breaker(spec)
            try:
                breaker.before_call()
            except UpstreamUnavailable as exc:
                reasons.append(f"{model}: {exc.message}")
                continue
            try:
                resp = await self._with_retries(spec, call)
            except _ProviderDown as exc:
                breaker.record_failure()
                self.upstream_errors[model] += 1
                reasons.append(f"{model}: {exc}")
                continue
            except VsmError:
                breaker.record_success()  # the provider answered; the request was at fault
                raise
            except BaseException:
                breaker.record_failure()  # cancelled mid-call: never leave a half-open probe pending
                raise
            breaker.record_success()
            return resp, model
        raise UpstreamUnavailable(
            f"no LLM provider reachable for model {name!r}: " + "; ".join(reasons),
            data={"code": "provider_unavailable", "attempts": reasons},
        )

    async def _with_retries(self, spec: ModelSpec, call: Callable[[ModelSpec, float], Awaitable[Any]]) -> Any:
        timeout = spec.timeout_s or self.settings.llm_timeout_s
        attempts = self.settings.llm_retries + 1
        await asyncio.to_thread(_litellm)  # the first import takes seconds: not on the call's clock
        for attempt in range(attempts):
            self.upstream_calls[spec.name] += 1
            try:
                # Our own deadline backs up litellm's: a stalled stream must not hang the caller.
                with anyio.fail_after(timeout + 1.0):
                    return await call(spec, timeout)
            except (InvalidArguments, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001 - foreign exceptions are mapped right here
                mapped = _classify(exc)
                if isinstance(mapped, InvalidArguments):
                    raise mapped from None
                if isinstance(mapped, _Retryable) and attempt + 1 < attempts:
                    self.upstream_errors[spec.name] += 1
                    await asyncio.sleep(min(2.0, 0.1 * 2**attempt) * (0.5 + random.random()))
                    continue
                raise _ProviderDown(str(mapped)) from None
        raise AssertionError("unreachable")  # pragma: no cover
