"""How a route declares what it is, so the one gate (router/gate/gate.py) can enforce it.

Every HTTP route of the app is built with ``gated_route`` (or ``gated_mount``)::

    gated_route("/v1/storage/{bucket}/{key:path}", endpoint, methods=["DELETE"],
                capability="storage:write", action="storage__storage_delete")

* ``capability`` — the scope the caller needs, checked with ``vsm_mcp.auth.grants`` exactly as a
  tool's capability tag is; or ``TOOL_CALL``: the route only carries tool calls, and each call
  gets scopes, policy, rate limit and audit from ``Dispatcher.call_tool`` (the gate still
  authenticates, applies the browser rules and limits the requests); or ``AUTHENTICATED``: any
  principal may (its answer depends on the caller's grants, e.g. the tool listing).
* ``action`` — what the route does in tool terms (``<server>__<tool>``): the tenant's policy is
  evaluated on it with the path parameters as ``input``, so ``DELETE /v1/storage/b/k`` meets the
  same rule as the ``storage_delete`` tool, and the request is audited as an episode under that
  name. Required unless the capability is ``TOOL_CALL``.
* ``auth`` — ``"key"`` (API key, or anonymous from a loopback peer where allowed) or ``"webhook"``
  (the route proves its caller itself, e.g. Telegram's shared secret compared in constant time;
  the gate still applies the browser rules and a per-peer limit).
* ``render`` — the error body shape: the edge's JSON (default), ``JSONRPC`` for MCP endpoints,
  or a function (the OpenAI-compatible routes answer in OpenAI's shape).

The endpoint is a Starlette request handler (``async def f(request) -> Response``) or, with
``asgi=True``, a plain ASGI app. It never checks auth, scopes or policy itself: it reads the
principal the gate established with ``router.gate.route.principal(request)``.

``ungated_routes(app)`` lists the routes that are not behind the gate (tests fail on any but the
public ones: health and metrics, by name).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vsm_mcp.auth import Principal
from vsm_mcp.errors import Unauthorized, VsmError

TOOL_CALL = "tool-call"
# The only routes outside the gate, by name. ``console`` serves static files that hold no data
# (router/edge/console): every figure its pages show comes from gated API calls with the user's key.
PUBLIC_ROUTES = frozenset({"healthz", "readyz", "metrics", "console"})
AUTHENTICATED = "authenticated"  # any principal may (e.g. list the tools it may call); policy and audit still apply
STATE_KEY = "principal"

Render = Callable[[VsmError], dict[str, Any]]


def JSONRPC(exc: VsmError) -> dict[str, Any]:  # noqa: N802 — a constant-like marker, used as render=JSONRPC
    """Error body of MCP endpoints: a JSON-RPC error without a request id."""
    return {"jsonrpc": "2.0", "id": None, "error": exc.to_jsonrpc()}


@dataclass(frozen=True)
class Declaration:
    """What a route is, as the gate reads it."""

    capability: str
    action: str = ""
    auth: Literal["key", "webhook"] = "key"
    render: Render | None = None
    server: str = field(init=False, default="")
    tool: str = field(init=False, default="")

    def __post_init__(self) -> None:
        if not self.capability:
            raise ValueError("a gated route needs a capability (a scope such as 'storage:write', or TOOL_CALL)")
        if self.capability != TOOL_CALL and "__" not in self.action:
            raise ValueError(
                f"a route with capability {self.capability!r} needs action='<server>__<tool>' "
                "(what the tenant's policy and the audit trail see)"
            )
        if self.action:
            server, _, tool = self.action.partition("__")
            object.__setattr__(self, "server", server)
            object.__setattr__(self, "tool", tool)


class GatedEndpoint:
    """The ASGI app of a gated route: hands every request to the app's gate with the declaration.

    The gate is found on ``app.state.gate`` (set by ``router.app.create_app`` or a test); a route
    mounted in an app without one answers 500 rather than run ungated."""

    __slots__ = ("decl", "app", "_owner", "_gate")

    def __init__(self, app: ASGIApp, decl: Declaration) -> None:
        self.app = app
        self.decl = decl
        self._owner: Any = None
        self._gate: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        owner = scope.get("app")
        if owner is not self._owner or self._gate is None:
            self._gate = getattr(getattr(owner, "state", None), "gate", None)
            self._owner = owner
            if self._gate is None:
                raise RuntimeError("a gated route runs in an app without a gate (set app.state.gate)")
        await self._gate.handle(self.decl, self.app, scope, receive, send)


def _as_asgi(endpoint: Callable[..., Any]) -> ASGIApp:
    """A Starlette request handler as an ASGI app (the way Starlette's Route wraps one)."""
    from starlette.requests import Request

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await endpoint(Request(scope, receive))
        await response(scope, receive, send)

    return app


def gated_route(
    path: str, endpoint: Callable[..., Any], *, methods: Sequence[str], capability: str, action: str = "",
    auth: Literal["key", "webhook"] = "key", render: Render | None = None, name: str | None = None,
    asgi: bool = False,
) -> Route:
    """A Starlette ``Route`` behind the gate; see the module docstring for the arguments.

    ``OPTIONS`` is added so the gate can answer CORS preflights for allow-listed origins."""
    decl = Declaration(capability, action, auth, render)
    is_handler = not asgi and (inspect.isfunction(endpoint) or inspect.ismethod(endpoint))
    app = _as_asgi(endpoint) if is_handler else endpoint
    allowed = sorted({m.upper() for m in methods} | {"OPTIONS"})
    return Route(path, GatedEndpoint(app, decl), methods=allowed, name=name or _name(endpoint))


def gated_mount(
    path: str, app: ASGIApp, *, capability: str, action: str = "", auth: Literal["key", "webhook"] = "key",
    render: Render | None = None, name: str | None = None,
) -> Mount:
    """A ``Mount`` whose whole ASGI app is behind the gate (e.g. the legacy SSE ``/messages/``)."""
    return Mount(path, app=GatedEndpoint(app, Declaration(capability, action, auth, render)), name=name)


def _name(endpoint: Any) -> str:
    return str(getattr(endpoint, "__name__", type(endpoint).__name__))


def declaration_of(route: BaseRoute) -> Declaration | None:
    app = getattr(route, "app", None)
    return app.decl if isinstance(app, GatedEndpoint) else None


def walk(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, BaseRoute]]:
    """Every (full path, route) of a route table, into mounts that have routes of their own."""
    for route in routes:
        path = prefix + str(getattr(route, "path", ""))
        if isinstance(route, Mount) and not isinstance(route.app, GatedEndpoint) and route.routes:
            yield from walk(route.routes, path)
        else:
            yield path, route


def ungated_routes(routes: Sequence[BaseRoute]) -> list[str]:
    """Paths of routes that are neither behind the gate nor public by name (should be empty)."""
    return [
        f"{path} ({getattr(route, 'name', '?')})" for path, route in walk(routes)
        if declaration_of(route) is None and getattr(route, "name", None) not in PUBLIC_ROUTES
    ]


def principal_of(scope: Scope) -> Principal | None:
    """The principal the gate established for this request, if any."""
    state = scope.get("state")
    if isinstance(state, dict):
        p = state.get(STATE_KEY)
        if isinstance(p, Principal):
            return p
    return None


async def principal(conn: HTTPConnection) -> Principal:
    """For handlers behind the gate: the caller (Unauthorized when the gate did not run)."""
    p = principal_of(conn.scope)
    if p is None:
        raise Unauthorized("no authenticated principal on this request (route not behind the gate)")
    return p
