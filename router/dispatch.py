"""THE choke point: every tool call — aggregate ``/mcp``, ``/mcp/<server>``, stdio, the meta-tool
``call_tool``, REST, Telegram, planner steps — goes through ``Dispatcher.call_tool``.

Pipeline (DESIGN.md "The dispatch pipeline"); the caller has done step 1 (authenticate)::

    2 resolve      public name → catalog entry                    NotFound
    3 authorize    scopes × capability tags, then authorizers     Forbidden / PolicyDenied
    4 validate     arguments against the input schema (2020-12)   InvalidArguments (names the field)
    5 rate limit   token bucket per principal and per tool        RateLimited (retry_after)
    6 cache        the CallCache hook, for cacheable tools        (no-op when none is set)
    7 call         persistent upstream session, timeout, breaker  UpstreamUnavailable / UpstreamTimeout
    8 record       observers + batched episode rows, off the hot path (router/recorder.py)

Routing failures raise ``vsm_mcp.errors`` classes (the MCP layer turns them into JSON-RPC
errors); a tool that ran and failed comes back as a ``CallToolResult`` with ``is_error``.

Hooks (vsm_mcp/hooks.py) plug in with ``add_authorizer(a)``, ``add_observer(o)`` and
``set_cache(c)`` (or the constructor's ``authorizers=``, ``observers=``, ``cache=``).
Nothing here does per-call database I/O or compiles a schema per call: validators are cached
by schema hash (router/arg_schema.py) and the principal's ``_meta`` by principal.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import mcp.types as mt

from router.arg_schema import ArgumentSchemas
from router.recorder import Recorder
from router.registry.catalog import Catalog, ToolEntry
from router.upstreams.upstream import Upstream
from vsm_mcp.auth import Principal, grants
from vsm_mcp.errors import Forbidden, InvalidArguments, RateLimited, UpstreamUnavailable, VsmError
from vsm_mcp.hooks import Authorizer, CallCache, CallInfo, CallObserver, CallOutcome
from vsm_mcp.resilience import RateLimiter
from vsm_mcp.telemetry import parse_traceparent

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]
LogFn = Callable[[str, Any, str | None], Awaitable[None]]  # (level, data, logger) of an upstream log message
TraceIn = tuple[str, str]  # (traceparent, tracestate) as the caller sent them
Via = Callable[[str, dict[str, Any], dict[str, Any], ProgressFn | None], Awaitable[mt.CallToolResult]]


class Dispatcher:
    """Runs the pipeline; see the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        upstreams: dict[str, Upstream],
        *,
        recorder: Recorder | None = None,
        authorizers: Iterable[Authorizer] = (),
        observers: Iterable[CallObserver] = (),
        cache: CallCache | None = None,
        rate_per_principal: float = 0.0,
        burst_per_principal: float = 0.0,
    ) -> None:
        self.catalog = catalog
        self.upstreams = upstreams
        self.recorder = recorder or Recorder(None, [])
        self.authorizers: list[Authorizer] = list(authorizers)
        for o in observers:
            self.add_observer(o)
        self.cache = cache
        self.principal_limiter = RateLimiter(rate_per_principal, burst_per_principal or max(1.0, 2 * rate_per_principal))
        self._tool_limiters: dict[str, RateLimiter] = {}
        self._schemas = ArgumentSchemas()
        self._meta: dict[Principal, dict[str, Any]] = {}
        # Start (and pass upstream) a span for calls that came without a trace: on when spans are
        # exported (VSM_OTEL_ENDPOINT); off, a call without a traceparent costs nothing extra.
        self.propagate_new_traces = False

    # --- hooks ---------------------------------------------------------------------------
    def add_authorizer(self, authorizer: Authorizer) -> None:
        self.authorizers.append(authorizer)

    def add_observer(self, observer: CallObserver) -> None:
        self.recorder.observers.append(observer)

    def set_cache(self, cache: CallCache | None) -> None:
        self.cache = cache

    # --- the pipeline --------------------------------------------------------------------
    async def call(
        self,
        principal: Principal,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        source: str = "server",
        meta: dict[str, Any] | None = None,
    ) -> mt.CallToolResult:
        """``vsm_mcp.hooks.ToolCaller``: a server's call of another server's tool (``ctx.tools``)."""
        return await self.call_tool(principal, name, arguments, source=source, meta=meta)

    async def call_tool(
        self,
        principal: Principal,
        public_name: str,
        arguments: dict[str, Any] | None,
        *,
        source: str = "mcp",
        progress: ProgressFn | None = None,
        via: Via | None = None,
        meta: dict[str, Any] | None = None,
        notify: LogFn | None = None,
        trace: TraceIn | None = None,
    ) -> mt.CallToolResult:
        """Run one call through steps 2-8 (see the module docstring).

        ``via(tool, arguments, meta, progress)`` replaces step 7's pooled session — the per-server
        proxy passes its downstream session's own upstream session (session affinity).
        ``meta`` adds request ``_meta`` entries for the upstream (idempotency key, trace context of a
        planner step); it cannot replace the principal's entries.
        ``notify(level, data, logger)`` receives the upstream's log messages about this call.
        ``trace`` is the caller's W3C ``(traceparent, tracestate)``: its trace id is recorded in the
        episode and the ``tool.*`` event, and the upstream gets ``traceparent`` (the router's span
        as the parent) and ``tracestate`` in ``_meta``. A ``traceparent`` in ``meta`` counts too.
        """
        result = await self._run(
            principal, public_name, arguments, source, progress, via, as_json=False, meta=meta, notify=notify,
            trace=trace,
        )
        if isinstance(result, dict):  # not asked for; kept total for the type checker
            return mt.CallToolResult.model_validate(result, by_name=False)
        return result

    async def call_tool_json(
        self, principal: Principal, public_name: str, arguments: dict[str, Any] | None, *, source: str = "mcp",
        trace: TraceIn | None = None,
    ) -> dict[str, Any]:
        """``call_tool`` for a caller that writes the result straight out as JSON (the /mcp fast
        lane): the same pipeline, but an upstream's JSON answer is passed through as it came —
        no model built only to be dumped again (about 15 µs of a routed call's critical path)."""
        result = await self._run(principal, public_name, arguments, source, None, None, as_json=True, trace=trace)
        if isinstance(result, dict):
            return result
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)

    async def _run(
        self,
        principal: Principal,
        public_name: str,
        arguments: dict[str, Any] | None,
        source: str,
        progress: ProgressFn | None,
        via: Via | None,
        *,
        as_json: bool,
        meta: dict[str, Any] | None = None,
        notify: LogFn | None = None,
        trace: TraceIn | None = None,
    ) -> mt.CallToolResult | dict[str, Any]:
        started = time.perf_counter()
        args = {} if arguments is None else arguments
        call = CallInfo(principal, public_name, "", public_name, args, source=source)
        if meta:
            call.meta = meta
            if trace is None and isinstance(meta.get("traceparent"), str):
                trace = (meta["traceparent"], str(meta.get("tracestate") or ""))
        self._trace(call, trace)
        try:
            if not isinstance(args, dict):
                raise InvalidArguments(f"arguments for tool {public_name!r} must be a JSON object")
            entry = self.catalog.resolve(public_name, principal.tenant_id)
            call.server, call.tool, call.tags = entry.server, entry.name, entry.tags
            call.annotations, call.schema_hash = entry.annotations, entry.schema_hash
            await self._authorize(call)
            self._schemas.get(entry.schema_hash, entry.input_schema).check(args, public_name)
            if entry.pinned:  # values an operator fixed (a tool override): the caller's never win
                args = call.arguments = {**args, **entry.pinned}
            self._rate_limit(principal, entry)
            result, cached = await self._invoke(call, entry, progress, via, as_json, notify)
        except VsmError as exc:
            self._record(call, started, exc.label, exc.message)
            raise
        error = _error_text(result)
        self._record(call, started, "ok" if error is None else "tool_error", error or "", cached)
        return result

    async def _authorize(self, call: CallInfo) -> None:
        if not grants(call.principal.scopes, call.tags):
            need = ", ".join(call.tags) if call.tags else "tools:call"
            # Anonymous callers have no key to blame; tell them what gets them the scope.
            who, hint = ("the API key", "") if call.principal.key_id else (
                "an anonymous caller", " (send an API key that has them: vsm-mcp keys create)")
            raise Forbidden(
                f"{who} may not call {call.public_name!r}: it needs scope(s) {need}{hint}",
                data={"tool": call.public_name, "required": list(call.tags) or ["tools:call"]},
            )
        for authorizer in self.authorizers:
            await authorizer.authorize(call)

    def _trace(self, call: CallInfo, trace: TraceIn | None) -> None:
        """The call's W3C trace: the caller's (continued with a span of ours, which the upstream
        gets in ``_meta`` as its parent), or a new trace id. Spans of calls that came without
        one are made (and propagated) only when spans are exported (``propagate_new_traces``)."""
        parsed = parse_traceparent(trace[0]) if trace is not None else None
        if parsed is None:
            call.trace_id = _trace_id()
            if not self.propagate_new_traces:
                return
            flags = "01"
        else:
            call.trace_id, call.parent_id, flags = parsed.trace_id, parsed.parent_id, parsed.flags
            call.tracestate = trace[1][:512] if trace is not None else ""
        call.span_id = _span_id()
        extra = {"traceparent": f"00-{call.trace_id}-{call.span_id}-{flags}"}
        if call.tracestate:
            extra["tracestate"] = call.tracestate
        call.meta = {**call.meta, **extra}

    def _rate_limit(self, principal: Principal, entry: ToolEntry) -> None:
        if self.principal_limiter.enabled:
            try:
                self.principal_limiter.take(f"{principal.tenant_id}/{principal.id}", "")
            except RateLimited as exc:  # say who was limited: a key, or a tenant's anonymous callers
                plim = self.principal_limiter
                tenant = principal.tenant_name or principal.tenant_id
                who = f"API key {principal.key_id}" if principal.key_id else "anonymous callers"
                raise RateLimited(
                    f"rate limit exceeded for {who} of tenant {tenant}: {plim.rate:g} calls/s, burst {plim.burst:g} "
                    f"(VSM_RATE_LIMIT, VSM_RATE_BURST); retry in {exc.retry_after:.3f}s",
                    retry_after=exc.retry_after, data={"who": who, "tenant": tenant},
                ) from None
        up = self.upstreams.get(entry.server)
        if up is not None and up.spec.rate_limit > 0:
            lim = self._tool_limiters.get(entry.public_name)
            if lim is None:
                rate = up.spec.rate_limit
                lim = self._tool_limiters[entry.public_name] = RateLimiter(rate, max(1.0, rate))
            lim.take(entry.public_name, f"tool {entry.public_name!r}")

    def meta_for(self, principal: Principal) -> dict[str, Any]:
        meta = self._meta.get(principal)
        if meta is None:
            if len(self._meta) > 10_000:
                self._meta.clear()
            meta = self._meta[principal] = principal.to_meta()
        return meta

    async def _invoke(
        self, call: CallInfo, entry: ToolEntry, progress: ProgressFn | None, via: Via | None, as_json: bool = False,
        notify: LogFn | None = None,
    ) -> tuple[mt.CallToolResult | dict[str, Any], bool]:
        up = self.upstreams.get(entry.server)
        if up is None:
            raise UpstreamUnavailable(f"upstream {entry.server!r} is not mounted", data={"server": entry.server})
        meta = self.meta_for(call.principal)
        if call.meta:
            meta = {**call.meta, **meta}
        if as_json and via is None and (self.cache is None or not entry.cacheable):
            return await up.call_tool(entry.name, call.arguments, meta=meta, as_json=True), False

        async def invoke() -> mt.CallToolResult:
            if via is not None:
                return await via(entry.name, call.arguments, meta, progress)
            return await up.call_tool(entry.name, call.arguments, meta=meta, progress=progress, notify=notify)

        if self.cache is not None and entry.cacheable:
            result, cached = await self.cache.get_or_call(call, invoke)
            return result, cached
        return await invoke(), False

    def _record(self, call: CallInfo, started: float, outcome: str, error: str = "", cached: bool = False) -> None:
        duration = (time.perf_counter() - started) * 1000
        self.recorder.record(call, CallOutcome(outcome=outcome, duration_ms=duration, error=error, cached=cached))


def _error_text(result: mt.CallToolResult | dict[str, Any]) -> str | None:
    """None for a result that is not an error; else its first text (or "tool error")."""
    if isinstance(result, dict):
        if result.get("isError") is not True:
            return None
        blocks = result.get("content")
        texts = [b.get("text") for b in blocks if isinstance(b, dict)] if isinstance(blocks, list) else []
    else:
        if not result.is_error:
            return None
        texts = [getattr(block, "text", None) for block in result.content]
    for text in texts:
        if text:
            return str(text)[:2000]
    return "tool error"


def _trace_id() -> str:
    # A W3C trace id (128 bits) from random, not the OS: it needs to be unique, not secret, and
    # getrandom is a system call on every routed call.
    return f"{random.getrandbits(128) or 1:032x}"


def _span_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"
