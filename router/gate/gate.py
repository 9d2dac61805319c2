"""The gate: one enforcement point in front of every route (DESIGN.md "The gate").

For each request to a route declared with ``gated_route`` (router/gate/route.py), in order:

1. **browser rules** — Host, Origin, CSRF; CORS preflights (router/gate/browser.py)
2. **authenticate** — API key, or anonymous when the peer is loopback and no forwarding header is
   present (``VSM_ALLOW_ANONYMOUS``; default tenant, ``VSM_ANONYMOUS_SCOPES``, never admin)
3. **rate limit** — one token per request from the caller's bucket (key, else anonymous peer);
   shared by all replicas with ``VSM_REDIS_URL``; 429 names who was limited, with Retry-After
4. **scopes** — the principal's scopes against the route's capability (``grants``)
5. **policy** — the tenant's policy on the route's action, through the same authorizers the
   dispatcher runs for tool calls
6. **audit** — an episode for the action, with the HTTP outcome (through the dispatcher's recorder)

Routes declared ``TOOL_CALL`` stop after step 3: their tool calls run steps 4-6 per call in
``Dispatcher.call_tool``. The principal is left in ``scope["state"]["principal"]``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from router.gate.browser import BrowserRules
from router.gate.limits import Limiter, limited, make_limiter
from router.gate.route import AUTHENTICATED, STATE_KEY, TOOL_CALL, Declaration, Render
from vsm_mcp.auth import Principal, grants
from vsm_mcp.config import Settings
from vsm_mcp.errors import ALL_ERRORS, Forbidden, RateLimited, Unauthorized, VsmError
from vsm_mcp.hooks import Authorizer, CallInfo, CallOutcome
from vsm_mcp.telemetry import Metrics

LOOPBACK_PEERS = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
FORWARDING = frozenset({b"forwarded", b"x-real-ip", b"x-client-ip", b"true-client-ip", b"via"})
_LABELS = {**{cls.status: cls.label for cls in reversed(ALL_ERRORS)}, 500: "internal"}


class Authenticate(Protocol):
    async def __call__(self, authorization: str | None, *, anonymous: bool) -> Principal: ...


class Recorder(Protocol):
    def record(self, call: CallInfo, outcome: CallOutcome) -> None: ...


def local_peer(scope: Scope, forwarded: bool) -> bool:
    """True for a caller on this host talking to us directly (no proxy in between)."""
    if forwarded:
        return False
    client = scope.get("client")
    if not client:
        return False
    addr = str(client[0])
    return addr in LOOPBACK_PEERS or addr.startswith("127.")


def who(principal: Principal | None, peer: str) -> str:
    """How a 429 names the caller."""
    if principal is None:
        return f"address {peer}"
    if principal.key_id:
        return f"API key {principal.key_id} (tenant {principal.tenant_name or principal.tenant_id})"
    return f"anonymous caller at {peer}"


async def send_error(send: Send, exc: VsmError, render: Render | None = None,
                     extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """One error response in the route's shape (edge JSON, JSON-RPC or the route's own)."""
    body = json.dumps(render(exc) if render is not None else exc.to_http()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    if isinstance(exc, Unauthorized):
        headers.append((b"www-authenticate", b'Bearer realm="vsm-mcp"'))
    if isinstance(exc, RateLimited):
        headers.append((b"retry-after", str(max(1, int(exc.retry_after + 0.999))).encode()))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Gate:
    """One per app (``app.state.gate``); see the module docstring."""

    def __init__(
        self, *, rules: BrowserRules, authenticate: Authenticate, limiter: Limiter, call_limiter: Limiter | None = None,
        authorizers: Sequence[Authorizer] = (), recorder: Recorder | None = None,
        trace_id: Callable[[], str] | None = None, metrics: Metrics | None = None,
    ) -> None:
        self.rules = rules
        self.metrics = metrics
        self.authenticate = authenticate
        self.limiter = limiter  # requests to routes that are actions of their own (VSM_EDGE_RATE_*)
        # requests to TOOL_CALL routes (VSM_TOOL_ROUTE_RATE_*): a flood guard; each call in them also
        # spends the dispatcher's per-key VSM_RATE_LIMIT
        self.call_limiter = call_limiter or limiter
        self.authorizers = authorizers  # the dispatcher's own list: one policy step for both
        self.recorder = recorder
        # 64 random bits, as the dispatcher's: unique, not secret, and no system call per request
        self.trace_id = trace_id or (lambda: f"{random.getrandbits(64):016x}")

    async def handle(self, decl: Declaration, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)  # no websocket routes exist; lifespan never reaches a route
            return
        host = origin = authorization = ctype = None
        forwarded = False
        for k, v in scope["headers"]:
            if k == b"host":
                host = v
            elif k == b"authorization":
                authorization = v
            elif k == b"origin":
                origin = v
            elif k == b"content-type":
                ctype = v
            elif k in FORWARDING or k[:12] == b"x-forwarded-":
                forwarded = True
        method = scope["method"]
        render = decl.render
        if method == "OPTIONS":  # CORS preflight (or a plain OPTIONS): the gate answers, never the route
            await self._options(scope, origin, send)
            return
        refusal = self.rules.check(method, host, origin, ctype, authorization is not None)
        if refusal is not None:
            await send_error(send, refusal, render)
            return
        cors = self.rules.cors_origin(origin)
        if cors is not None:  # before authentication: a page on an allowed origin can read why it was refused
            send = _with_headers(send, self.rules.response_headers(cors))
        peer = scope["client"][0] if scope.get("client") else "unknown"
        principal: Principal | None = None
        try:
            if decl.auth == "key":
                principal = await self.authenticate(
                    None if authorization is None else authorization.decode("latin-1"),
                    anonymous=local_peer(scope, forwarded),
                )
                bucket = principal.key_id or f"anon:{peer}"
            else:
                bucket = f"peer:{peer}"
            limiter = self.call_limiter if decl.capability == TOOL_CALL else self.limiter
            wait = await limiter.take(bucket)
            if wait > 0:
                if self.metrics is not None:
                    self.metrics.rate_limited.labels("call" if limiter is self.call_limiter else "edge").inc()
                raise limited(who(principal, peer), wait, limiter.rate, limiter.burst)
        except VsmError as exc:
            if isinstance(exc, Unauthorized):  # failed attempts spend the address's budget: no key guessing at speed
                wait = await self.limiter.take(f"peer:{peer}")
                if wait > 0:
                    exc = limited(f"address {peer}", wait, self.limiter.rate, self.limiter.burst)
            await send_error(send, exc, render)
            return
        if principal is not None:
            scope.setdefault("state", {})[STATE_KEY] = principal
        if decl.capability == TOOL_CALL or principal is None:
            await app(scope, receive, send)
            return
        await self._act(decl, principal, app, scope, receive, send)

    async def _act(
        self, decl: Declaration, principal: Principal, app: ASGIApp, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Steps 4-6 for a route that is an action of its own."""
        started = time.perf_counter()
        args = {str(k): str(v) for k, v in (scope.get("path_params") or {}).items()}
        call = CallInfo(principal, decl.action, decl.server, decl.tool, args, tags=(decl.capability,),
                        source="http", trace_id=self.trace_id())
        try:
            if decl.capability != AUTHENTICATED and not grants(principal.scopes, call.tags):
                raise Forbidden(
                    f"this API key lacks scope {decl.capability!r} (needed for {scope['method']} {scope['path']})",
                    data={"required": [decl.capability]},
                )
            for authorizer in self.authorizers:
                await authorizer.authorize(call)
        except VsmError as exc:
            self._record(call, started, exc.label, exc.message)
            await send_error(send, exc, decl.render)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await app(scope, receive, watch)
        finally:
            self._record(call, started, "ok" if 0 < status < 400 else _LABELS.get(status, f"http_{status}"))

    def _record(self, call: CallInfo, started: float, outcome: str, error: str = "") -> None:
        if self.recorder is not None:
            duration = (time.perf_counter() - started) * 1000
            self.recorder.record(call, CallOutcome(outcome=outcome, duration_ms=duration, error=error))

    async def _options(self, scope: Scope, origin: bytes | None, send: Send) -> None:
        if origin is None:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        allowed = self.rules.cors_origin(origin)
        asks = any(k == b"access-control-request-method" for k, _ in scope["headers"])
        if allowed is None or not self.rules.host_allowed(_header(scope, b"host")):
            await send_error(send, Forbidden(f"Origin {origin.decode('latin-1')!r} is not allowed (see VSM_CORS_ORIGINS)"))
            return
        headers = self.rules.preflight_headers(allowed) if asks else self.rules.response_headers(allowed)
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def aclose(self) -> None:
        await self.limiter.aclose()
        if self.call_limiter is not self.limiter:
            await self.call_limiter.aclose()


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return None


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped




def build_gate(
    settings: Settings, authenticate: Authenticate, *, authorizers: Sequence[Authorizer] = (),
    recorder: Recorder | None = None, trace_id: Callable[[], str] | None = None, metrics: Metrics | None = None,
) -> Gate:
    """The gate an app gets from its settings (router/app.py; tests of parts of the edge too)."""
    rules = BrowserRules(
        loopback_bind=settings.is_loopback, allowed_hosts=settings.allowed_hosts, cors_origins=settings.cors_origins
    )
    return Gate(
        rules=rules, authenticate=authenticate,
        limiter=make_limiter(settings.edge_rate_per_s, settings.edge_rate_burst, settings.redis_url, name="edge"),
        call_limiter=make_limiter(settings.tool_route_rate_per_s, settings.tool_route_rate_burst, settings.redis_url,
                                  name="call"),
        authorizers=authorizers, recorder=recorder, trace_id=trace_id, metrics=metrics,
    )
